// An emulated Raspberry Pi Pico for deploy tests: MicroPython's webassembly port behind a
// pseudo-terminal that mpremote really talks to.
//
//   node board.mjs --runtime DIR --fd N --flash DIR
//
// fd N is the pty master (the host keeps the slave open). The board has the friendly
// and raw REPL (mpremote's protocol; raw-paste mode is refused, so mpremote falls back
// to the plain raw REPL), a file system kept in --flash (copied in at power-up, out
// after each raw-REPL command and whenever a file written on the board is closed), boot.py
// and main.py on reset, the watchdog, and the `machine` / `time` modules of
// board_modules/. Input levels (a jumper, a button) are read from FLASH.inputs (JSON
// {"gpio": level}) whenever the firmware creates an input pin, so the host can change
// them at any time; every change of an output pin is appended to FLASH.gpio. The USB serial port is the pty: main.py's firmware with the USB
// transport answers the gate protocol on the port mpremote used, and while code runs a
// Ctrl-C interrupts it only if the code left Ctrl-C enabled (kbd_intr), as on a Pico.
//
// One synchronous loop: read the pty (non-blocking), feed the REPL, sleep 1 ms when idle.
// Exits when the host ends the process (a power cut: flash keeps what was written).

import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
let runtime = null;
let ptyFd = -1;
let flashDir = null;
for (let i = 0; i < args.length; i += 2) {
  const [flag, value] = [args[i], args[i + 1]];
  if (flag === "--runtime") runtime = value;
  else if (flag === "--fd") ptyFd = parseInt(value, 10);
  else if (flag === "--flash") flashDir = path.resolve(value);
  else fail(`unknown option ${flag}`);
}
if (!runtime || ptyFd < 0 || !flashDir) fail("usage: --runtime DIR --fd N --flash DIR");

function fail(message) {
  fs.writeSync(2, `emulated pico: ${message}\n`);
  process.exit(2);
}
const log = (message) => fs.writeSync(2, `[emulated pico] ${message}\n`);
const { loadMicroPython } = await import(pathToFileURL(path.join(runtime, "micropython.mjs")));

const PYEXEC_FORCED_EXIT = 0x100; // replProcessChar: the REPL asked for a soft reset
const HIDDEN = new Set(["dev", "proc", "tmp", "home", ".board"]); // not part of the flash
const BOARD_MODULES = ["machine.py", "time.py", "board_init.py"];
const sleeper = new Int32Array(new SharedArrayBuffer(4));
const sleepMs = (ms) => Atomics.wait(sleeper, 0, 0, ms);

let mp = null;
let executing = false; // Python code is running: Ctrl-C may interrupt it
let rawMode = false;
const received = []; // bytes from the host not yet consumed
let sending = [];
const readBuffer = Buffer.alloc(4096);

// ------------------------------------------------------------------- the USB port
function pump() {
  for (;;) {
    let n = 0;
    try {
      n = fs.readSync(ptyFd, readBuffer, 0, readBuffer.length, null);
    } catch (error) {
      if (error.code === "EAGAIN" || error.code === "EIO") return; // nothing / nobody there
      throw error;
    }
    if (n <= 0) return;
    for (let i = 0; i < n; i++) {
      const byte = readBuffer[i];
      if (executing && mp && byte === interruptChar()) {
        mp._module.ccall("mp_sched_keyboard_interrupt", "null", [], []);
      } else {
        received.push(byte);
      }
    }
  }
}
const interruptChar = () => mp._module.ccall("mp_hal_get_interrupt_char", "number", [], []);
function flush() {
  if (!sending.length) return;
  const bytes = Buffer.from(sending);
  sending = [];
  for (let off = 0; off < bytes.length; ) {
    try {
      off += fs.writeSync(ptyFd, bytes, off, bytes.length - off);
    } catch (error) {
      if (error.code === "EAGAIN") sleepMs(1);
      else if (error.code === "EIO") return; // nobody has the port open: bytes are lost
      else throw error;
    }
  }
}
const emit = (text) => sending.push(...Buffer.from(text, "latin1"));

// ------------------------------------------------------------ board, seen from Python
const board = {
  wdt: null, // { timeout, fed } while the watchdog runs
  resetRequest: null, // reset cause (0 power-on, 1 watchdog) of a pending hard reset
  resetCause: 0,
  levels: new Map(), // GPIO -> output level
  inputLevel(pin) {
    fs.appendFileSync(`${flashDir}.reads`, `${pin}\n`); // every input set up, for tests
    try {
      const levels = JSON.parse(fs.readFileSync(`${flashDir}.inputs`, "utf8"));
      return pin in levels ? levels[pin] : null;
    } catch {
      return null; // no file: every input floats to its pull
    }
  },
  pin(pin, level) {
    if (board.levels.get(pin) === level) return;
    board.levels.set(pin, level);
    fs.appendFileSync(`${flashDir}.gpio`, `${pin} ${level}\n`); // every output change, for tests
  },
  poll() {
    pump();
    flush();
    board.checkWatchdog();
  },
  sleep(ms) {
    const until = Date.now() + ms;
    do {
      board.poll();
      if (board.resetRequest) return;
      sleepMs(1);
    } while (Date.now() < until);
  },
  wdtStart: (timeout) => (board.wdt = { timeout, fed: Date.now() }),
  wdtFeed: () => board.wdt && (board.wdt.fed = Date.now()),
  checkWatchdog() {
    if (board.wdt && !board.resetRequest && Date.now() - board.wdt.fed > board.wdt.timeout) {
      log("watchdog expired: hard reset");
      board.resetRequest = 1;
      if (executing) mp._module.ccall("mp_sched_keyboard_interrupt", "null", [], []);
    }
  },
  reset: () => (board.resetRequest = 0),
  flashWritten: () => saveFlash(),
  randomHex: (n) => crypto.randomBytes(n).toString("hex"), // os.urandom (board_init.py)
};
globalThis.board = board;

// -------------------------------------------------------------------------- flash
function saveFlash() {
  const tmp = `${flashDir}.saving`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  const walk = (inside, host) => {
    for (const name of mp.FS.readdir(inside)) {
      if (name === "." || name === ".." || (inside === "/" && HIDDEN.has(name))) continue;
      const p = (inside === "/" ? "" : inside) + "/" + name;
      if (mp.FS.isDir(mp.FS.stat(p).mode)) {
        fs.mkdirSync(path.join(host, name));
        walk(p, path.join(host, name));
      } else fs.writeFileSync(path.join(host, name), mp.FS.readFile(p));
    }
  };
  walk("/", tmp);
  fs.rmSync(flashDir, { recursive: true, force: true });
  fs.renameSync(tmp, flashDir);
}
function loadFlash() {
  fs.mkdirSync(flashDir, { recursive: true });
  const walk = (host, inside) => {
    for (const name of fs.readdirSync(host)) {
      const h = path.join(host, name);
      const p = (inside === "/" ? "" : inside) + "/" + name;
      if (fs.statSync(h).isDirectory()) {
        mp.FS.mkdirTree(p);
        walk(h, p);
      } else mp.FS.writeFile(p, fs.readFileSync(h));
    }
  };
  walk(flashDir, "/");
  mp.FS.mkdirTree("/.board");
  for (const name of BOARD_MODULES) {
    mp.FS.writeFile(`/.board/${name}`, fs.readFileSync(path.join(HERE, "board_modules", name)));
  }
}

// ------------------------------------------------------------------- interpreter
function readByte() {
  if (!received.length) board.poll();
  return received.length ? received.shift() : null; // null: nothing now (read gives b"")
}
function prepare() {
  mp.runPython(
    "import sys, os\nsys.path.insert(0, '/.board')\nos.chdir('/')\nimport board_init\n",
  );
}
async function powerUp(cause) {
  board.wdt = null; // a reset stops the watchdog
  board.resetCause = cause;
  board.resetRequest = null;
  rawMode = false;
  mp = await loadMicroPython({
    heapsize: 256 * 1024, // about what a Pico leaves to Python
    linebuffer: false,
    stdin: readByte,
    stdout: (bytes) => {
      sending.push(bytes[0]);
      if (sending.length >= 256) flush();
    },
    stderr: (bytes) => sending.push(bytes[0]),
  });
  loadFlash();
  prepare();
  boot(true);
}
function fileExists(p) {
  try {
    mp.FS.stat(p);
    return true;
  } catch {
    return false;
  }
}
function runFile(name) {
  if (!fileExists(`/${name}`)) return;
  executing = true;
  try {
    mp.runPython(`
import sys, micropython
micropython.kbd_intr(3)
try:
    exec(open('/${name}').read(), {'__name__': '__main__'})
except SystemExit:
    pass
except BaseException as e:
    sys.print_exception(e)
micropython.kbd_intr(-1)
`);
  } catch (error) {
    log(`${name}: ${error.message}`);
  }
  executing = false;
  flush();
}
function boot(withMain) {
  runFile("boot.py");
  if (withMain && board.resetRequest === null) runFile("main.py");
  if (board.resetRequest !== null) return; // main.py reset the board, or the watchdog did
  mp.replInit(); // banner and ">>> ", or "raw REPL; CTRL-B to exit\r\n>"
  flush();
}
function softReset() {
  emit("MPY: soft reboot\r\n");
  flush();
  saveFlash();
  board.resetCause = 2;
  // The same interpreter (a soft reset keeps the REPL mode), without any module or global.
  mp.runPython(
    "def _clear():\n    import sys\n    for k in list(sys.modules):\n        del sys.modules[k]\n" +
      "    g = globals()\n    for k in list(g):\n        if not k.startswith('__'):\n" +
      "            del g[k]\n_clear()\n",
  );
  prepare();
  boot(!rawMode);
}

// ----------------------------------------------------------------------- main loop
process.on("uncaughtException", (error) => {
  log(`fatal: ${error && error.message}`);
  process.exit(70);
});
await powerUp(0);
for (;;) {
  if (board.resetRequest !== null) {
    saveFlash();
    log(`hard reset (cause ${board.resetRequest})`);
    await powerUp(board.resetRequest);
    continue;
  }
  if (!received.length) {
    board.poll();
    if (!received.length) {
      sleepMs(1);
      continue;
    }
  }
  const byte = received.shift();
  if (rawMode && byte === 0x05) {
    // raw-paste probe "\x05A\x01": answer "not supported"
    const start = Date.now();
    while (received.length < 2 && Date.now() - start < 200) {
      board.poll();
      sleepMs(1);
    }
    if (received[0] === 0x41 && received[1] === 0x01) {
      received.splice(0, 2);
      emit("R\x00");
      flush();
      continue;
    }
  }
  if (byte === 0x01) rawMode = true;
  else if (byte === 0x02) rawMode = false;
  executing = true;
  let status = 0;
  try {
    status = mp.replProcessChar(byte);
  } catch (error) {
    log(`repl: ${error.message}`);
  }
  executing = false;
  flush();
  if (board.resetRequest !== null) continue;
  if (status & PYEXEC_FORCED_EXIT) softReset();
  else if (byte === 0x04 && rawMode) saveFlash(); // a raw-REPL command ran
}
