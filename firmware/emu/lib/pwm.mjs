// Reading a GPIO's PWM duty cycle from the RP2040 PWM slice registers.
//
// rp2040js 1.4.1 does model PWM output (RPPWM: slice counters on simulated-time alarms drive the
// GPIO level, so edges can be observed with onPinChange). Measuring duty from edges needs many
// periods of simulation and an observer attached in time, so this reads what the firmware
// programmed instead: CSR (enable, phase-correct, invert), DIV, CC and TOP of the pin's slice.
// These are the values last written; the hardware latches CC/TOP at the next counter wrap, so
// the output follows within one PWM period.

const FUNCSEL_PWM = 4;
const CSR_EN = 1 << 0;
const CSR_PH_CORRECT = 1 << 1;
const CSR_A_INV = 1 << 2;
const CSR_B_INV = 1 << 3;

/** The PWM slice (0..7) and channel ('A' | 'B') a GPIO maps to. */
export function pwmChannelOf(pin) {
  return { slice: (pin >> 1) & 7, channel: pin & 1 ? 'B' : 'A' };
}

/**
 * The programmed PWM state of `pin`.
 * @returns {{ pin, slice, channel, routed, enabled, top, compare, divider, phaseCorrect,
 *   inverted, duty, frequencyHz }} duty is 0..1 (after inversion); routed tells whether the pin's
 *   function select is PWM at all.
 */
export function readPwm(mcu, pin) {
  const { slice, channel } = pwmChannelOf(pin);
  const ch = mcu.pwm.channels[slice];
  const top = ch.top & 0xffff;
  const compare = channel === 'A' ? ch.cc & 0xffff : (ch.cc >>> 16) & 0xffff;
  const divInt = (ch.div >> 4) & 0xff;
  const divider = (divInt === 0 ? 256 : divInt) + (ch.div & 0xf) / 16;
  const phaseCorrect = (ch.csr & CSR_PH_CORRECT) !== 0;
  const inverted = (ch.csr & (channel === 'A' ? CSR_A_INV : CSR_B_INV)) !== 0;
  const high = Math.min(compare / (top + 1), 1);
  return {
    pin,
    slice,
    channel,
    routed: mcu.gpio[pin].functionSelect === FUNCSEL_PWM,
    enabled: (ch.csr & CSR_EN) !== 0,
    top,
    compare,
    divider,
    phaseCorrect,
    inverted,
    duty: inverted ? 1 - high : high,
    frequencyHz: mcu.clkSys / ((top + 1) * (phaseCorrect ? 2 : 1) * divider),
  };
}
