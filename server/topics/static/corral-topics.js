// corral's browser client for topics (the wire format is docs/topics.md): subscribe, keep the
// last position of every topic, reconnect with backoff and jitter, resume with no gap and no
// duplicate. A plain JavaScript module, no build step:
//
//   import { TopicClient } from "/corral-topics.js";
//   const client = new TopicClient("ws://host/topics", { storage: sessionStorage });
//   client.subscribe("news", { onPost: (data, post) => show(data) });

const ANSWERS = new Set(["subscribed", "unrecoverable"]);

export class TopicClient {
  // url: the WebSocket to connect to. Options: storage (sessionStorage, say: positions survive a
  // page reload), storageKey, minDelay and maxDelay (ms, the backoff), protocols (offered
  // subprotocols), onOpen(client) after each connect (after the subscriptions are sent again),
  // onMessage(message) for frames that are not the topics' own (an app's messages on the same
  // socket), onState(state, detail) with "connecting", "open" or "closed" (detail.retryAt: when,
// in Date.now() milliseconds, the next attempt is due).
  constructor(url, options = {}) {
    this.url = url;
    this.options = options;
    this.storage = options.storage ?? null;
    this.storageKey = options.storageKey ?? "corral-topics";
    this.minDelay = options.minDelay ?? 250;
    this.maxDelay = options.maxDelay ?? 10000;
    this.topics = new Map(); // topic -> { handlers, position }
    this.attempt = 0;
    this.socket = null;
    this.closed = false;
    this.timer = null;
    this.saved = this._load();
    this._onOnline = () => this._reconnectNow();
    this._onOffline = () => this.socket?.close(4000, "offline");
    globalThis.addEventListener?.("online", this._onOnline);
    globalThis.addEventListener?.("offline", this._onOffline);
    this._connect();
  }

  // Follow a topic. handlers: onPost(data, post), onSubscribed(answer), onUnrecoverable(answer)
  // (some posts were lost to this client: answer.why is "epoch", "trimmed" or "future"; what
  // the topic still keeps follows as posts), onError(message). A position saved in storage
  // (from before a reload) is resumed from; else from: { epoch, offset } if given.
  subscribe(topic, handlers = {}, from = null) {
    const position = this.saved[topic] ?? from ?? null;
    this.topics.set(topic, { handlers, position });
    this._sendSubscribe(topic);
  }

  unsubscribe(topic) {
    this.topics.delete(topic);
    delete this.saved[topic];
    this._save();
    this._send({ type: "unsubscribe", topic });
  }

  // The last position seen on a topic ({ epoch, offset }), or null.
  position(topic) {
    return this.topics.get(topic)?.position ?? null;
  }

  // Send an app message on the same socket (false if it is not open now).
  send(message) {
    return this._send(message);
  }

  // Reconnect now if disconnected (a "retry now" button), the backoff starting over.
  reconnect() {
    this.attempt = 0;
    this._reconnectNow();
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    globalThis.removeEventListener?.("online", this._onOnline);
    globalThis.removeEventListener?.("offline", this._onOffline);
    this.socket?.close(1000);
  }

  _connect() {
    if (this.closed) return;
    this.options.onState?.("connecting");
    const socket = new WebSocket(this.url, this.options.protocols);
    this.socket = socket;
    socket.onopen = () => {
      this.attempt = 0;
      for (const topic of this.topics.keys()) this._sendSubscribe(topic);
      this.options.onState?.("open");
      this.options.onOpen?.(this);
    };
    socket.onmessage = (event) => this._received(JSON.parse(event.data));
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      const delay = this._later();
      this.options.onState?.("closed", { retryAt: Date.now() + delay });
    };
  }

  // Full jitter: a random wait up to minDelay * 2^attempt, at most maxDelay; returns it.
  _later() {
    if (this.closed) return 0;
    const ceiling = Math.min(this.maxDelay, this.minDelay * 2 ** this.attempt);
    const delay = Math.random() * ceiling;
    this.attempt += 1;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this._connect(), delay);
    return delay;
  }

  _reconnectNow() {
    if (this.closed || this.socket) return;
    clearTimeout(this.timer);
    this._connect();
  }

  // A frame with the topic, epoch and offset of a followed topic is one of its posts, whatever
  // its type: "post" (its data is handed on), or an app's own rendering (the whole frame is).
  _received(message) {
    const entry = message.topic === undefined ? undefined : this.topics.get(message.topic);
    const positioned = typeof message.epoch === "string" && Number.isInteger(message.offset);
    if (entry === undefined || !positioned) {
      if (message.type === "error" && entry !== undefined) entry.handlers.onError?.(message);
      else this.options.onMessage?.(message);
      return;
    }
    const at = entry.position;
    if (!ANSWERS.has(message.type)) {
      if (at && at.epoch === message.epoch && message.offset <= at.offset) return; // seen
      this._moveTo(message.topic, entry, message);
      let data = message;
      if (message.type === "post") data = message.base64 ? atob(message.data) : message.data;
      entry.handlers.onPost?.(data, message);
    } else if (message.type === "subscribed") {
      this._moveTo(message.topic, entry, message);
      entry.handlers.onSubscribed?.(message);
    } else {
      this._moveTo(message.topic, entry, message);
      entry.handlers.onUnrecoverable?.(message);
    }
  }

  // Where the client is now; never back within an epoch (a second answer for a topic, after
  // a resubscribe, may name an older position than the posts already shown).
  _moveTo(topic, entry, message) {
    const at = entry.position;
    if (at && at.epoch === message.epoch && message.offset <= at.offset) return;
    entry.position = { epoch: message.epoch, offset: message.offset };
    this.saved[topic] = entry.position;
    this._save();
  }

  _sendSubscribe(topic) {
    const position = this.topics.get(topic).position;
    this._send({ type: "subscribe", topic, ...(position ?? {}) });
  }

  _send(message) {
    if (this.socket?.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  _load() {
    try {
      return JSON.parse(this.storage?.getItem(this.storageKey) ?? "{}") ?? {};
    } catch {
      return {};
    }
  }

  _save() {
    this.storage?.setItem(this.storageKey, JSON.stringify(this.saved));
  }
}
