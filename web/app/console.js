// Shared by porthole's console pages: ask the API for a console ticket and turn it into the
// WebSocket URL. The ticket is single-use and lives at most 30 seconds, so one is fetched
// for every connection.

export async function consoleUrl(root, kind) {
  const response = await fetch(root.dataset.ticketUrl, {
    method: 'POST',
    credentials: 'same-origin',
    headers: {
      'content-type': 'application/json',
      'x-csrf-token': document.querySelector('meta[name="csrf-token"]')?.content ?? '',
    },
    body: JSON.stringify({ kind }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body.error?.message || `${response.status} ${response.statusText}`);
  }
  const url = new URL(body.ws_path, window.location.href);
  url.protocol = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  url.searchParams.set('ticket', body.ticket);
  return url.href;
}

export function statusLine(element) {
  return (text, kind = 'info') => {
    element.textContent = text;
    element.dataset.kind = kind;
  };
}
