// Run-time patch for rp2040js 1.4.1's Cortex-M0+ core: SEV.
//
// Why: the core decodes SEV but only logs it (logger.info('SEV')); it does not set the event
// register. embassy-executor's thread-mode pender is exactly `sev`, and its run loop is
// `poll(); wfe`. So a task woken from thread mode (by another task through a channel or signal,
// or by yield_now) is not run until some unrelated interrupt ends the WFE: inter-task hand-offs
// get delayed by up to the next timer alarm or USB/UART/I2C interrupt, and a busy task stalls.
// The decoder is one large function, so the hook is the log call it makes for SEV.

/** Makes SEV set the event register; call after any change of `mcu.logger`. */
export function patchSev(mcu) {
  const logger = mcu.logger;
  const info = logger.info.bind(logger);
  logger.info = (component, message) => {
    if (message === 'SEV') mcu.core.eventRegistered = true;
    else info(component, message);
  };
  return mcu;
}
