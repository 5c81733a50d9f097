// The console's only script: the operator's session pages.
//
// * /sessions — "Start a session": POST /api/v1/sessions (ingest takes the console login and
//   its CSRF token), then the session page, which shows the code once.
// * /sessions/{id} — the live view (the session's camera and screen over WebRTC: two
//   receive-only H.264 tracks answered by the console server), and the session followed on
//   ingest's live WebSocket with notices only (?frames=none): the customer joining and
//   consenting, pauses, blinds, who has control, chat both ways, the end. Chat and input go
//   back on the same socket; "End the session" posts to /api/v1/sessions/{id}/end.
//
// Text from the network is only ever put on the page with textContent.
'use strict';

const csrfHeaders = (csrf) => ({ 'content-type': 'application/json', 'x-csrf-token': csrf });

async function watchLive(section) {
  const status = document.getElementById('live-status');
  const show = (text) => { status.textContent = text; };
  const pc = new RTCPeerConnection();
  const videos = { 0: document.getElementById('camera'), 1: document.getElementById('screen') };
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.ontrack = (event) => {
    const video = videos[event.transceiver.mid] || videos[0];
    video.srcObject = new MediaStream([event.track]);
    video.play().catch(() => {});
  };
  pc.onconnectionstatechange = () => show(pc.connectionState);
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') resolve();
    });
  });
  const response = await fetch(`/sessions/${section.dataset.session}/live`, {
    method: 'POST',
    headers: csrfHeaders(section.dataset.csrf),
    body: JSON.stringify({ sdp: pc.localDescription.sdp }),
  });
  if (!response.ok) {
    show(`refused: ${await response.text()}`);
    return;
  }
  const { sdp } = await response.json();
  await pc.setRemoteDescription({ type: 'answer', sdp });
  window.idvLive = pc;
}

async function startSession(section) {
  const status = document.getElementById('start-status');
  const caseReference = document.getElementById('case-reference').value.trim();
  const response = await fetch('/api/v1/sessions', {
    method: 'POST',
    headers: csrfHeaders(section.dataset.csrf),
    body: JSON.stringify(caseReference ? { case_reference: caseReference } : {}),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    status.textContent = `Not started: ${body.error || response.status}`;
    return;
  }
  // The code is shown once, on the session page of this tab (never stored by the server).
  sessionStorage.setItem(`idv-code-${body.session_id}`, JSON.stringify(body));
  window.location.assign(`/sessions/${body.session_id}`);
}

function append(list, text, className) {
  const item = document.createElement('li');
  item.textContent = text;
  if (className) item.className = className;
  list.appendChild(item);
  list.scrollTop = list.scrollHeight;
}

const clock = (at) => (at ? new Date(at) : new Date()).toISOString().slice(11, 19);

// The session followed on ingest's live WebSocket (notices only).
function followSession(main) {
  const session = main.dataset.session;
  const stateText = document.getElementById('session-state');
  const scopesText = document.getElementById('session-scopes');
  const chatLog = document.getElementById('chat-log');
  const eventLog = document.getElementById('event-log');
  const codePanel = document.getElementById('code-panel');
  const event = (text) => append(eventLog, `${clock()} ${text}`);
  const showState = (state, scopes) => {
    stateText.textContent = state;
    main.dataset.state = state;
    if (scopes) scopesText.textContent = scopes.length ? scopes.join(', ') : '—';
    if (state !== 'created') codePanel.hidden = true;
  };
  const socket = new WebSocket(`wss://${window.location.host}/api/v1/sessions/${session}/live?frames=none`);
  const notices = {
    session: (n) => { showState(n.state, n.scopes); event(`the session is ${n.state}${n.scopes.length ? ` (consent: ${n.scopes.join(', ')})` : ''}`); },
    chat: (n) => append(chatLog, `${clock(n.at)} ${n.from === 'customer' ? 'Customer' : n.from}: ${n.text}`, n.from === 'customer' ? 'customer' : 'operator'),
    paused: () => event('the customer PAUSED sharing'),
    resumed: () => event('the customer resumed sharing'),
    blinds: (n) => event(n.regions ? `the customer hides ${n.regions} region(s) of the screen` : 'the customer hides nothing any more'),
    control: (n) => event(n.holder === 'customer' ? 'the customer TOOK CONTROL BACK' : 'the customer is idle: your input is used'),
    refused: (n) => event(`refused (${n.request}): ${n.reason}`),
    gap: () => {},
    ended: (n) => { showState('ended'); event(`the session ended: ${n.reason}`); },
  };
  socket.onmessage = (message) => {
    let notice;
    try { notice = JSON.parse(message.data); } catch { return; }
    (notices[notice.type] || (() => {}))(notice);
  };
  socket.onclose = () => { if (main.dataset.state !== 'ended') event('lost the connection to the session; reload to follow it again'); };
  return socket;
}

function wireChat(socket) {
  const form = document.getElementById('chat-form');
  const text = document.getElementById('chat-text');
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!text.value.trim()) return;
    socket.send(JSON.stringify({ type: 'chat', text: text.value }));
    text.value = '';
  });
}

// While "control" is ticked, clicks on the screen picture go to the customer's screen as
// pointer and button events, in the screen's own pixels. The agent injects them only while
// the customer is idle.
function wireControl(socket) {
  const toggle = document.getElementById('take-control');
  const screen = document.getElementById('screen');
  const watch = document.getElementById('watch');
  toggle.addEventListener('change', () => watch.classList.toggle('controlling', toggle.checked));
  const at = (e) => {
    const box = screen.getBoundingClientRect();
    const scale = screen.videoWidth / box.width || 1;
    return {
      x: Math.max(0, Math.round((e.clientX - box.left) * scale)),
      y: Math.max(0, Math.round((e.clientY - box.top) * scale)),
    };
  };
  const send = (events) => socket.send(JSON.stringify({ type: 'input', events }));
  screen.addEventListener('mousedown', (e) => {
    if (!toggle.checked) return;
    e.preventDefault();
    send([{ kind: 'pointer_move', ...at(e) }, { kind: 'button', button: e.button + 1, pressed: true }]);
  });
  screen.addEventListener('mouseup', (e) => {
    if (!toggle.checked) return;
    send([{ kind: 'pointer_move', ...at(e) }, { kind: 'button', button: e.button + 1, pressed: false }]);
  });
}

function wireEnd(main) {
  const button = document.getElementById('end-session');
  button.addEventListener('click', async () => {
    button.disabled = true;
    const response = await fetch(`/api/v1/sessions/${main.dataset.session}/end`, {
      method: 'POST',
      headers: csrfHeaders(main.dataset.csrf),
      body: JSON.stringify({ reason: 'ended by the operator in the console' }),
    });
    if (response.ok) {
      main.dataset.state = 'ended';
      document.getElementById('session-state').textContent = 'ended';
    } else {
      button.disabled = false;
      append(document.getElementById('event-log'), `could not end: ${response.status}`);
    }
  });
}

function showCode(main) {
  const saved = sessionStorage.getItem(`idv-code-${main.dataset.session}`);
  if (!saved || main.dataset.state !== 'created') return;
  const created = JSON.parse(saved);
  document.getElementById('code').textContent = `${created.code.slice(0, 3)} ${created.code.slice(3)}`;
  document.getElementById('code-expiry').textContent = created.expires_at.replace('T', ' ').slice(0, 19);
  const join = document.getElementById('join-link');
  join.href = `/join?group=${encodeURIComponent(created.group)}`;
  document.getElementById('code-panel').hidden = false;
}

const start = document.getElementById('start-session');
if (start) {
  start.addEventListener('click', () => {
    startSession(document.getElementById('start')).catch((error) => {
      document.getElementById('start-status').textContent = `Not started: ${error}`;
    });
  });
}

const main = document.getElementById('session');
if (main) {
  showCode(main);
  if (main.dataset.state !== 'ended') {
    const socket = followSession(main);
    wireChat(socket);
    wireControl(socket);
    wireEnd(main);
    watchLive(document.getElementById('watch')).catch((error) => {
      document.getElementById('live-status').textContent = `failed: ${error}`;
    });
  }
}
