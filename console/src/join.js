// The customer join page: redeem the code and record consent over the ingest API (as the
// agent does), then send the camera (and the screen, if chosen) over WebRTC to the console,
// which records them into the session. The "remote support in progress" notice stays up
// while anything is sent; "Stop sharing and leave" ends the session.
'use strict';

const root = document.getElementById('join');
const $ = (id) => document.getElementById(id);
const say = (text) => { $('join-message').textContent = text; };
const state = (text) => { $('state').textContent = text; };

// Everything of the running join, for leaving (and for tests: window.idvJoin).
const joined = { token: null, pc: null, streams: [], left: false };
window.idvJoin = joined;

async function post(path, body, bearer) {
  const headers = { 'content-type': 'application/json' };
  if (bearer) headers.authorization = `Bearer ${bearer}`;
  const response = await fetch(path, { method: 'POST', headers, body: JSON.stringify(body) });
  let answer = {};
  try { answer = await response.json(); } catch (_) { /* no body */ }
  if (!response.ok) {
    const error = new Error(answer.error || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return answer;
}

function stopLocal() {
  for (const stream of joined.streams) stream.getTracks().forEach((t) => t.stop());
  joined.streams = [];
  if (joined.pc) joined.pc.close();
}

async function join(event) {
  event.preventDefault();
  const code = $('code').value.replace(/\s+/g, '');
  const camera = $('consent-camera').checked;
  const screen = $('consent-screen').checked;
  if (!camera && !screen) return say('Choose your camera, your screen, or both.');
  if (!$('consent-recording').checked) return say('The session can only go on if it is recorded.');
  $('join-button').disabled = true;
  say('');
  try {
    if (!joined.token) {
      // A code works once: after it is redeemed, a retry (say, the camera was refused) goes on
      // with the same session.
      const request = { code, group: root.dataset.group };
      if (root.dataset.session) request.session_id = root.dataset.session;
      const session = await post('/api/v1/join', request);
      joined.token = session.session_token;
    }
    const scopes = ['recording'];
    if (camera) scopes.push('camera');
    if (screen) scopes.push('screen');
    await post('/api/v1/consent', { scopes, granted_by: 'the customer, on the join page' }, joined.token);

    // Only now is anything captured, and only what was agreed to.
    const tracks = [];
    const pc = new RTCPeerConnection();
    joined.pc = pc;
    wireChat(pc.createDataChannel('chat'));
    if (camera) {
      const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
      joined.streams.push(stream);
      $('preview').srcObject = stream;
      pc.addTransceiver(stream.getVideoTracks()[0], { direction: 'sendonly', streams: [stream] });
      tracks.push('camera');
    }
    if (screen) {
      if (!navigator.mediaDevices.getDisplayMedia) throw new Error('this browser cannot share a screen');
      const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
      joined.streams.push(stream);
      pc.addTransceiver(stream.getVideoTracks()[0], { direction: 'sendonly', streams: [stream] });
      tracks.push('screen');
      // The browser's own "stop sharing" ends the screen: leave, as the button would.
      stream.getVideoTracks()[0].addEventListener('ended', () => leave());
    }
    $('notice').textContent = `Remote support in progress — you are sharing your ${tracks.join(' and ')} with your bank, and the session is recorded.`;
    $('join-form').hidden = true;
    $('sharing').hidden = false;
    pc.onconnectionstatechange = () => {
      state(pc.connectionState);
      if (!joined.left && (pc.connectionState === 'failed' || pc.connectionState === 'closed')) {
        stopLocal();
        $('notice').textContent = 'The session has ended. Nothing is shared any more.';
      }
    };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') resolve();
      });
    });
    const answer = await post('/join/webrtc', { session_token: joined.token, sdp: pc.localDescription.sdp, tracks });
    joined.codec = answer.codec;
    joined.offeredSdp = pc.localDescription.sdp;
    await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
  } catch (error) {
    stopLocal();
    $('join-button').disabled = false;
    $('join-form').hidden = false;
    $('sharing').hidden = true;
    say(`Could not join: ${error.message}`);
  }
}

// Chat with the adviser on a data channel beside the media: what the adviser writes arrives
// as {"type":"chat","from","text"}; what the customer types goes as plain text.
function wireChat(channel) {
  joined.chat = channel;
  const log = $('join-chat-log');
  const show = (text, className) => {
    const item = document.createElement('li');
    item.textContent = text;
    item.className = className;
    log.appendChild(item);
    log.scrollTop = log.scrollHeight;
  };
  channel.onmessage = (event) => {
    let message;
    try { message = JSON.parse(event.data); } catch (_) { return; }
    if (message.type === 'chat') show(`${message.from} (your bank): ${message.text}`, 'operator');
  };
  $('join-chat-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const text = $('join-chat-text').value.trim();
    if (!text || channel.readyState !== 'open') return;
    channel.send(text);
    show(`You: ${text}`, 'customer');
    $('join-chat-text').value = '';
  });
}

async function leave() {
  if (joined.left) return;
  joined.left = true;
  $('leave').disabled = true;
  state('leaving…');
  try {
    // The console delivers what was captured and ends the session; if it runs no media for
    // this page (it never started), the session is ended directly.
    try {
      joined.leaveAnswer = await post('/join/leave', { session_token: joined.token });
    } catch (error) {
      if (error.status !== 404) throw error;
      await post('/api/v1/agent/end', {}, joined.token);
    }
    say('You have left. The session has ended and nothing is shared any more.');
  } catch (error) {
    say(`Leaving failed: ${error.message}`);
  } finally {
    stopLocal();
    $('notice').textContent = 'Sharing stopped.';
    state('ended');
    joined.done = true;
  }
}

$('join-form').addEventListener('submit', join);
$('leave').addEventListener('click', leave);
