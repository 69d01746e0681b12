// Parley's browser room client: joins a meeting through the gateway's WebSocket bridge
// (/v1/signal, parley.sfu.v1.ConnectRequest / ConnectResponse in the protobuf JSON mapping).
//
//   const room = await ParleyRoom.connect(token);
//   room.addEventListener("track", (e) => video.srcObject = new MediaStream([e.detail.track]));
//   await room.publish(cameraTrack, "TRACK_SOURCE_CAMERA");
//
// Media uses two peer connections, as the SFU expects: "publisher" (offered here) and
// "subscriber" (offered by the SFU). Events: joined, participant, participantLeft,
// trackPublished, track, trackUnpublished, trackMuted, data, speakers, quality, error, left.

const KINDS = { audio: "TRACK_KIND_AUDIO", video: "TRACK_KIND_VIDEO" };

export class ParleyRoom extends EventTarget {
  static async connect(token, { url = signalUrl(), manualSubscribe = false } = {}) {
    const ws = new WebSocket(url);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error(`cannot reach ${url}`));
    });
    const room = new ParleyRoom(ws);
    const joined = room.#waitFor((m) => m.joined);
    room.#send({ join: { token, manualSubscribe } });
    const message = await joined;
    room.#onJoined(message.joined);
    return room;
  }

  constructor(ws) {
    super();
    this.ws = ws;
    this.participants = new Map(); // identity -> Participant (JSON)
    this.published = new Map(); // track sid -> Track (JSON)
    this.trackSids = {}; // subscriber mid -> track sid
    this.publisher = null;
    this.subscriber = null;
    this.nextId = 1;
    this.waiters = [];
    this.chain = Promise.resolve(); // publisher negotiations, one at a time
    ws.onmessage = (event) => this.#onMessage(JSON.parse(event.data));
    ws.onclose = (event) => {
      clearInterval(this.pinger);
      for (const waiter of this.waiters) waiter.reject(new Error(`signal closed (${event.code})`));
      this.dispatchEvent(new CustomEvent("left", { detail: { code: event.code, reason: event.reason } }));
    };
  }

  #send(message) {
    const requestId = String(this.nextId++);
    this.ws.send(JSON.stringify({ requestId, ...message }));
    return requestId;
  }

  #waitFor(match, requestId = null) {
    const waiter = { match, requestId };
    waiter.promise = new Promise((resolve, reject) => Object.assign(waiter, { resolve, reject }));
    this.waiters.push(waiter);
    return waiter.promise;
  }

  #onJoined(joined) {
    this.self = joined.participant;
    this.iceServers = (joined.iceServers || []).map((s) => ({ urls: s.urls, username: s.username, credential: s.credential }));
    for (const p of joined.otherParticipants || []) this.participants.set(p.identity, p);
    this.dispatchEvent(new CustomEvent("joined", { detail: joined }));
    // The SFU ends a session it hears nothing from for three ping intervals: ping at its pace.
    const interval = parseFloat(joined.pingInterval || "10s") * 1000 || 10000;
    this.pinger = setInterval(() => this.ws.readyState === 1 && this.#send({ ping: { timestamp: String(Date.now()) } }), interval);
  }

  #newConnection(target) {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: "max-bundle" });
    pc.onicecandidate = (e) => {
      if (e.candidate && e.candidate.candidate) {
        this.#send({
          trickle: { target, candidate: e.candidate.candidate, sdpMid: e.candidate.sdpMid || "", sdpMlineIndex: e.candidate.sdpMLineIndex || 0 },
        });
      }
    };
    return pc;
  }

  async #onMessage(m) {
    for (const waiter of [...this.waiters]) {
      const failed = m.error && waiter.requestId && m.error.requestId === waiter.requestId;
      if (failed || waiter.match(m)) {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        failed ? waiter.reject(new Error(`${m.error.status.message}`)) : waiter.resolve(m);
      }
    }
    if (m.offer) await this.#onSubscriberOffer(m.offer);
    else if (m.trackPublished && m.trackPublished.participantIdentity !== this.self?.identity)
      this.dispatchEvent(new CustomEvent("trackPublished", { detail: m.trackPublished }));
    else if (m.participantJoined) this.#participant(m.participantJoined.participant);
    else if (m.participantUpdated) this.#participant(m.participantUpdated.participant);
    else if (m.participantLeft) {
      this.participants.delete(m.participantLeft.identity);
      this.dispatchEvent(new CustomEvent("participantLeft", { detail: m.participantLeft }));
    } else if (m.trackUnpublished) this.dispatchEvent(new CustomEvent("trackUnpublished", { detail: m.trackUnpublished }));
    else if (m.trackMuted) this.dispatchEvent(new CustomEvent("trackMuted", { detail: m.trackMuted }));
    else if (m.data) {
      const payload = Uint8Array.from(atob(m.data.payload || ""), (c) => c.charCodeAt(0));
      this.dispatchEvent(new CustomEvent("data", { detail: { ...m.data, payload, text: new TextDecoder().decode(payload) } }));
    } else if (m.speakersChanged) this.dispatchEvent(new CustomEvent("speakers", { detail: m.speakersChanged.speakers || [] }));
    else if (m.connectionQuality) this.dispatchEvent(new CustomEvent("quality", { detail: m.connectionQuality.updates || [] }));
    else if (m.error) this.dispatchEvent(new CustomEvent("error", { detail: m.error }));
    else if (m.left) this.dispatchEvent(new CustomEvent("left", { detail: m.left }));
  }

  #participant(p) {
    if (p.identity === this.self?.identity) {
      this.self = p;
      return;
    }
    const known = this.participants.has(p.identity);
    this.participants.set(p.identity, p);
    this.dispatchEvent(new CustomEvent("participant", { detail: { participant: p, joined: !known } }));
  }

  async #onSubscriberOffer(offer) {
    if (!this.subscriber) {
      this.subscriber = this.#newConnection("SIGNAL_TARGET_SUBSCRIBER");
      this.subscriber.ontrack = (e) => {
        const sid = this.trackSids[e.transceiver.mid];
        this.dispatchEvent(new CustomEvent("track", { detail: { track: e.track, sid, transceiver: e.transceiver } }));
      };
    }
    this.trackSids = offer.trackSids || {};
    await this.subscriber.setRemoteDescription({ type: "offer", sdp: offer.sdp });
    const answer = await this.subscriber.createAnswer();
    await this.subscriber.setLocalDescription(answer);
    this.#send({ answer: { sdp: answer.sdp } });
  }

  // Publishes a MediaStreamTrack; source is a parley.control.v1.TrackSource name.
  publish(track, source, name = "") {
    const work = this.chain.then(async () => {
      const announced = this.#send({ publishTrack: { cid: track.id, kind: KINDS[track.kind], source, name } });
      const waits = [];
      const wait = (match, requestId) => {
        const promise = this.#waitFor(match, requestId);
        promise.catch(() => {}); // settled by the race below, or dropped with the session
        waits.push(promise);
        return promise;
      };
      const refused = wait(() => false, announced);
      const confirmed = wait((m) => m.trackPublished && m.trackPublished.cid === track.id);
      if (!this.publisher) this.publisher = this.#newConnection("SIGNAL_TARGET_PUBLISHER");
      const transceiver = this.publisher.addTransceiver(track, { direction: "sendonly" });
      try {
        const offer = await this.publisher.createOffer();
        await this.publisher.setLocalDescription(offer);
        const answered = wait((m) => m.answer);
        const offered = this.#send({ offer: { sdp: offer.sdp } });
        const offerRefused = wait(() => false, offered);
        const answer = await Promise.race([answered, offerRefused]);
        await this.publisher.setRemoteDescription({ type: "answer", sdp: answer.answer.sdp });
        const published = (await Promise.race([confirmed, refused, offerRefused])).trackPublished.track;
        this.published.set(published.sid, published);
        return published;
      } catch (error) {
        transceiver.stop(); // refused: send nothing
        throw error;
      } finally {
        this.waiters = this.waiters.filter((w) => !waits.includes(w.promise));
      }
    });
    this.chain = work.catch(() => {});
    return work;
  }

  // Subscribes to (or, with subscribe false, drops) others' tracks: for manualSubscribe rooms.
  subscribe(trackSids, subscribe = true, paused = false) {
    this.#send({ updateSubscription: { trackSids, subscribe, paused } });
  }

  setMuted(trackSid, muted) {
    this.#send({ muteTrack: { trackSid, muted } });
  }

  sendChat(text, destinations = []) {
    const payload = btoa(String.fromCharCode(...new TextEncoder().encode(text)));
    this.#send({ data: { kind: "DATA_KIND_RELIABLE", topic: "chat", payload, destinationIdentities: destinations } });
  }

  raiseHand(raised) {
    this.#send({ updateMetadata: { attributes: { hand_raised: raised ? "true" : "" } } });
  }

  leave() {
    clearInterval(this.pinger);
    if (this.ws.readyState === 1) this.#send({ leave: {} });
    this.ws.close();
    this.publisher?.close();
    this.subscriber?.close();
  }
}

export function signalUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/v1/signal`;
}
