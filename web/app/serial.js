// The serial console page: xterm.js connected through porthole's gateway in binary framing.
// Keystrokes go out as binary frames; the terminal's size goes out as a JSON control frame
// whenever it changes, and reaches the guest.
import { Terminal } from '/assets/xterm/lib/xterm.mjs';
import { FitAddon } from '/assets/xterm-fit/lib/addon-fit.mjs';
import { consoleUrl, statusLine } from '/assets/app/console.js';

const root = document.getElementById('console');
const status = statusLine(document.getElementById('status'));
const term = new Terminal({ cursorBlink: true, scrollback: 10000, fontSize: 15 });
const fitAddon = new FitAddon();
term.loadAddon(fitAddon);
term.open(document.getElementById('terminal'));
fitAddon.fit();
const state = { connected: false, ended: null, term };
window.porthole = state;
const encoder = new TextEncoder();
let socket = null;

function sendSize() {
  if (socket?.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ resize: { cols: term.cols, rows: term.rows } }));
  }
}

async function connect() {
  status('Connecting…');
  let url;
  try {
    url = await consoleUrl(root, 'serial');
  } catch (error) {
    status(`Cannot open the console: ${error.message}`, 'error');
    return;
  }
  socket = new WebSocket(url, ['binary']);
  socket.binaryType = 'arraybuffer';
  socket.addEventListener('open', () => {
    state.connected = true;
    status(`Connected to ${root.dataset.name}`, 'ok');
    sendSize();
    term.focus();
  });
  socket.addEventListener('message', (event) => {
    if (event.data instanceof ArrayBuffer) term.write(new Uint8Array(event.data));
  });
  socket.addEventListener('close', (event) => {
    state.connected = false;
    state.ended = event.code;
    status(`Disconnected (${event.code}${event.reason ? `: ${event.reason}` : ''}).`, 'error');
  });
}

term.onData((data) => {
  if (socket?.readyState === WebSocket.OPEN) socket.send(encoder.encode(data));
});
term.onResize(sendSize);
window.addEventListener('resize', () => fitAddon.fit());
document.getElementById('fit').addEventListener('click', () => fitAddon.fit());
document.getElementById('copy').addEventListener('click', () => {
  navigator.clipboard.writeText(term.getSelection());
  term.focus();
});
document.getElementById('paste').addEventListener('click', async () => {
  const text = await navigator.clipboard.readText();
  if (socket?.readyState === WebSocket.OPEN) socket.send(encoder.encode(text));
  term.focus();
});
document.getElementById('reconnect').addEventListener('click', () => {
  socket?.close();
  term.reset();
  connect();
});
connect();
