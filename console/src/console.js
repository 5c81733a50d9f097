// The console's only script: the operator's live view. Receives the session's camera and
// screen over WebRTC (two receive-only H.264 video tracks, answered by the console server).
'use strict';

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
    headers: { 'content-type': 'application/json', 'x-csrf-token': section.dataset.csrf },
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

const section = document.getElementById('watch');
if (section) {
  watchLive(section).catch((error) => {
    document.getElementById('live-status').textContent = `failed: ${error}`;
  });
}
