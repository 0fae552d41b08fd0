// The VNC console page: noVNC connected through porthole's gateway. The gateway does the VNC
// authentication itself, so the browser never sees a VNC password.
import RFB from '/assets/novnc/core/rfb.js';
import { consoleUrl, statusLine } from '/assets/app/console.js';

const root = document.getElementById('console');
const screen = document.getElementById('screen');
const status = statusLine(document.getElementById('status'));
const fit = document.getElementById('fit');
const clipboard = document.getElementById('clipboard');
const state = { connected: false, ended: null };
window.porthole = state;
let rfb = null;

async function connect() {
  status('Connecting…');
  let url;
  try {
    url = await consoleUrl(root, 'vnc');
  } catch (error) {
    status(`Cannot open the console: ${error.message}`, 'error');
    return;
  }
  rfb = new RFB(screen, url, { wsProtocols: ['binary'] });
  state.rfb = rfb;
  rfb.scaleViewport = fit.checked;
  rfb.focusOnClick = true;
  rfb.addEventListener('connect', () => {
    state.connected = true;
    status(`Connected to ${root.dataset.name}`, 'ok');
    rfb.focus();
  });
  rfb.addEventListener('disconnect', (event) => {
    state.connected = false;
    state.ended = event.detail.clean ? 'clean' : 'error';
    status(event.detail.clean ? 'Disconnected.' : 'The connection was lost.', 'error');
  });
  rfb.addEventListener('securityfailure', (event) => {
    status(`The console refused the connection: ${event.detail.reason || 'no reason given'}`, 'error');
  });
  rfb.addEventListener('clipboard', (event) => {
    clipboard.value = event.detail.text;
  });
}

document.getElementById('ctrl-alt-del').addEventListener('click', () => rfb?.sendCtrlAltDel());
document.getElementById('reconnect').addEventListener('click', () => {
  rfb?.disconnect();
  connect();
});
document.getElementById('send-clipboard').addEventListener('click', () => {
  rfb?.clipboardPasteFrom(clipboard.value);
  rfb?.focus();
});
fit.addEventListener('change', () => {
  if (rfb) rfb.scaleViewport = fit.checked;
});
connect();
