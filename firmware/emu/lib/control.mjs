// JSON control commands for a running EmulatedBoard (bin/serve.mjs reads them from stdin, one
// object per line). Each returns a JSON-serialisable answer; unknown or bad commands throw.

const DEVICES = ['emc2101', 'tps546', 'ina260'];

function device(board, name) {
  if (!DEVICES.includes(name) || !board[name]) throw new Error(`unknown device ${JSON.stringify(name)}`);
  return board[name];
}

function number(msg) {
  if (typeof msg.value !== 'number' || !Number.isFinite(msg.value)) throw new Error('"value" must be a number');
  return msg.value;
}

/** A snapshot of what an external test usually checks. */
export function boardStatus(board) {
  const pins = board.wiring;
  const fan = board.pwm(pins.fanPwmPin);
  return {
    ms: +board.ms.toFixed(3),
    fanPercent: +board.emc2101.fanPercent().toFixed(2),
    fanSetting: board.emc2101.fanSetting(),
    fanPwmDuty: fan.routed && fan.enabled ? +fan.duty.toFixed(4) : null,
    regulator: { on: board.tps546.isOn(), voutMv: +board.tps546.voutMv().toFixed(1) },
    pins: {
      powerEnable: board.pin(pins.powerEnablePin),
      asicReset: board.pin(pins.asicResetPin),
      led: board.pin(pins.ledPin),
    },
    present: Object.fromEntries(DEVICES.map((d) => [d, board[d].present])),
    usb: { enumerated: board.usbHost.enumerated, dtr: board.usb.dtr, serialNumber: board.usbHost.strings.serialNumber ?? null },
    chain: { baud: board.chain.baudRate, ...board.chain.stats },
    warnings: board.warnings.count,
  };
}

const COMMANDS = {
  status: (board) => boardStatus(board),
  setExternalTemp: (board, msg) => board.emc2101.setExternalTemp(number(msg)),
  setInternalTemp: (board, msg) => board.emc2101.setInternalTemp(number(msg)),
  failExternalDiode: (board, msg) => board.emc2101.failExternalDiode(msg.value ?? null),
  setTachRpm: (board, msg) => board.emc2101.setTachRpm(msg.value ?? null),
  setRegulatorTemp: (board, msg) => board.tps546.setTemperature(number(msg)),
  setStatusWord: (board, msg) => board.tps546.setStatusWord(number(msg)),
  setVin: (board, msg) => board.tps546.setVin(number(msg)),
  setIout: (board, msg) => board.tps546.setIout(number(msg)),
  setInputVolts: (board, msg) => board.ina260.setVolts(number(msg)),
  setInputAmps: (board, msg) => board.ina260.setAmps(number(msg)),
  setPresent: (board, msg) => {
    device(board, msg.device).present = !!msg.value;
  },
  setPin: (board, msg) => board.setPinInput(msg.pin, !!msg.value),
  pin: (board, msg) => ({ pin: msg.pin, level: board.pin(msg.pin), state: board.pinState(msg.pin) }),
  pwm: (board, msg) => board.pwm(msg.pin),
  i2cWrites: (board, msg) => device(board, msg.device).writes.slice(-(msg.last ?? 20)),
};

export const CONTROL_COMMANDS = Object.keys(COMMANDS);

/** Executes one control message `{ cmd, ... }`; returns `{ ok: true, cmd, result? }`. */
export function runCommand(board, msg) {
  const handler = COMMANDS[msg?.cmd];
  if (!handler) throw new Error(`unknown cmd ${JSON.stringify(msg?.cmd)}; known: ${CONTROL_COMMANDS.join(', ')}`);
  const result = handler(board, msg);
  return result === undefined ? { ok: true, cmd: msg.cmd } : { ok: true, cmd: msg.cmd, result };
}
