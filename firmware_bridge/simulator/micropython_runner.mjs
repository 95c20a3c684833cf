// Serves a MicroPython module to the host, one request line -> one answer line.
//
//   node micropython_runner.mjs --runtime DIR --module NAME [--heap BYTES]
//        [--file HOST_PATH=INTERPRETER_PATH ...]
//
// Loads MicroPython's webassembly port from DIR (micropython.mjs + .wasm, pinned and
// checked by the host before it starts us), copies each --file into the interpreter's
// in-memory file system, imports NAME and then, for every line on stdin, writes
// NAME.handle(line) and a newline to stdout. print() output of the Python code goes to
// stderr, never to stdout. The interpreter runs only while a request is being answered,
// so the host owns all timing. Exits when stdin closes.

import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { pathToFileURL } from "node:url";

const args = process.argv.slice(2);
const files = [];
let runtime = null;
let moduleName = null;
let heap = 1024 * 1024;
for (let i = 0; i < args.length; i += 2) {
  const [flag, value] = [args[i], args[i + 1]];
  if (flag === "--runtime") runtime = value;
  else if (flag === "--module") moduleName = value;
  else if (flag === "--heap") heap = parseInt(value, 10);
  else if (flag === "--file") files.push(value.split("="));
  else fail(`unknown option ${flag}`);
}
if (!runtime || !moduleName || !/^[A-Za-z_][A-Za-z0-9_.]*$/.test(moduleName)) {
  fail("usage: --runtime DIR --module NAME [--file HOST=PATH ...]");
}

function fail(message) {
  fs.writeSync(2, `micropython_runner: ${message}\n`);
  process.exit(2);
}

const log = (text) => fs.writeSync(2, `[micropython] ${text}\n`);
const { loadMicroPython } = await import(pathToFileURL(path.join(runtime, "micropython.mjs")));
const mp = await loadMicroPython({ heapsize: heap, stdout: log, stderr: log });
for (const [host, inside] of files) {
  mp.FS.mkdirTree(path.posix.dirname(inside));
  mp.FS.writeFile(inside, fs.readFileSync(host));
}
mp.runPython(`import ${moduleName}\n_handle = ${moduleName}.handle`);
const handle = mp.globals.get("_handle");

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
lines.on("line", (line) => {
  let answer;
  try {
    answer = handle(line);
  } catch (error) {
    answer = JSON.stringify({ error: `interpreter: ${error && error.message}` });
  }
  fs.writeSync(1, `${answer}\n`);
});
lines.on("close", () => process.exit(0));
