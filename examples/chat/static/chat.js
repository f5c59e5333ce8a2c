// corral chat: the browser side of examples/chat.
//
// One WebSocket per page at /ws/<room> on the page's own host, JSON text frames:
//   to the server:   {type: "join", nick}   {type: "say", text}
//                    {type: "subscribe", topic: "room:<room>", epoch, offset} (the topic client)
//   from the server: history {messages: [{nick, text, at}]}, members {nicks}, joined {nick},
//                    left {nick}, said {nick, text, at, topic, epoch, offset}, error {reason},
//                    subscribed and unrecoverable (the topic client's)
// The connection is corral's topic client (/corral-topics.js): when it drops (or the browser
// goes offline) it reconnects with backoff and jitter, follows the room's topic again from the
// last message shown and joins again with the same nick, so the page shows exactly what was
// said meanwhile, once each. The position, the nick and the messages shown are kept in
// sessionStorage: a reload shows them again and resumes from there. All server text goes into
// the page through textContent, never as HTML.
// A chat run with a secret needs a signed token, given to the page in its fragment
// (#token=...&room=...: never sent to the server): the page offers it as the subprotocol
// "bearer.<token>" (a browser cannot set headers on a WebSocket), and the token's nick is the
// only one the server takes.
import { TopicClient } from "/corral-topics.js";

(() => {
  const MAX_TEXT_BYTES = 4096;
  const BACKOFF_FIRST_MS = 500;
  const BACKOFF_MAX_MS = 10_000;
  const MAX_LINES = 1_000;
  const KEPT_MESSAGES = 50; // shown again after a reload

  const ui = {
    roomName: byId("room-name"),
    status: byId("status"),
    reconnectButton: byId("reconnect-button"),
    messages: byId("messages"),
    joinForm: byId("join-form"),
    nickInput: byId("nick-input"),
    joinButton: byId("join-button"),
    joinError: byId("join-error"),
    messageForm: byId("message-form"),
    ownNick: byId("own-nick"),
    messageInput: byId("message-input"),
    sendButton: byId("send-button"),
    members: byId("members"),
    memberCount: byId("member-count"),
  };

  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  const room = roomFromUrl();
  const topic = `room:${room}`;
  const shownKey = `corral-chat-shown:${room}`;
  const chat = {
    client: null,
    open: false,
    phase: "nick", // "nick": asking for one; "joining": join sent or due; "joined"
    nick: "",
    rejoining: false, // joined before this connection dropped: keep showing the room
    members: new Set(),
    shown: [], // the last messages shown, kept for a reload
    retryAt: 0,
    countdownTimer: 0,
  };

  // --- connection ------------------------------------------------------------------------

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${scheme}//${location.host}/ws/${encodeURIComponent(room)}`;
    chat.client = new TopicClient(url, {
      protocols: token ? ["chat", `bearer.${token}`] : undefined,
      storage: sessionStorage,
      storageKey: "corral-chat-positions",
      minDelay: BACKOFF_FIRST_MS,
      maxDelay: BACKOFF_MAX_MS,
      onState: connectionChanged,
      onOpen: () => {
        if (chat.phase !== "nick") send({ type: "join", nick: chat.nick });
      },
      onMessage: receive,
    });
    chat.client.subscribe(topic, {
      onPost: (message) => handlers.said(message),
      onUnrecoverable: () =>
        addLine(systemLine("Some messages were missed: the room no longer keeps them", "error"), true),
    });
  }

  function connectionChanged(state, detail) {
    stopCountdown();
    if (state === "connecting") setStatus("connecting", "Connecting…");
    if (state === "open") {
      chat.open = true;
      setStatus("connected", "Connected");
    }
    if (state !== "closed") return;
    if (chat.open) addLine(systemLine("Connection lost", "error"));
    chat.open = false;
    if (chat.phase === "joined") {
      chat.phase = "joining"; // join again, same nick, once back
      chat.rejoining = true;
    }
    showForms();
    chat.retryAt = detail.retryAt;
    chat.countdownTimer = setInterval(showCountdown, 250);
    showCountdown();
    ui.reconnectButton.hidden = false;
  }

  function showCountdown() {
    const seconds = Math.max(1, Math.ceil((chat.retryAt - Date.now()) / 1000));
    setStatus("disconnected", `Disconnected — reconnecting in ${seconds} s…`);
  }

  function stopCountdown() {
    clearInterval(chat.countdownTimer);
    ui.reconnectButton.hidden = true;
  }

  function send(message) {
    return chat.client !== null && chat.client.send(message);
  }

  // --- what the server says --------------------------------------------------------------

  const handlers = {
    history({ messages }) {
      if (chat.phase === "joining") joinAccepted();
      ui.messages.replaceChildren();
      chat.shown = [];
      for (const message of messages || []) show(message);
      scrollToNewest();
    },
    members({ nicks }) {
      chat.members = new Set(nicks || []);
      if (chat.phase === "joining" && chat.members.has(chat.nick)) joinAccepted();
      renderMembers();
    },
    joined({ nick }) {
      const isMe = chat.phase !== "nick" && nick === chat.nick;
      if (isMe && chat.phase === "joining") joinAccepted();
      chat.members.add(nick);
      renderMembers();
      addLine(systemLine(isMe ? `You joined #${room} as ${nick}` : `${nick} joined`));
    },
    left({ nick }) {
      chat.members.delete(nick);
      renderMembers();
      addLine(systemLine(`${nick} left`));
    },
    said(message) {
      show(message, message.nick === chat.nick);
    },
    error({ reason }) {
      const text = String(reason || "unknown error");
      // Anything about the nick or joining means we are not in the room: ask again.
      if (chat.phase === "joining" || /nick|join/i.test(text)) joinRefused(text);
      else addLine(systemLine(`Error: ${text}`, "error"), true);
    },
  };

  function receive(message) {
    const handle = message && Object.hasOwn(handlers, message.type) && handlers[message.type];
    if (handle) handle(message);
    else console.warn("corral chat: ignoring an unknown message", message);
  }

  // --- what the person does --------------------------------------------------------------

  ui.joinForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const nick = ui.nickInput.value.trim();
    if (!nick) return;
    chat.nick = nick;
    chat.phase = "joining";
    ui.joinError.hidden = true;
    showForms();
    send({ type: "join", nick }); // or on open, if we are between connections
  });

  ui.messageForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = ui.messageInput.value;
    if (!text.trim() || chat.phase !== "joined") return;
    const size = new TextEncoder().encode(text).length;
    if (size > MAX_TEXT_BYTES) {
      addLine(systemLine(`Not sent: ${size} bytes is over the ${MAX_TEXT_BYTES}-byte limit`, "error"), true);
      return;
    }
    if (send({ type: "say", text })) ui.messageInput.value = "";
  });

  ui.reconnectButton.addEventListener("click", () => chat.client.reconnect());

  window.addEventListener("hashchange", () => {
    if (roomFromUrl() !== room) location.reload();
  });

  function joinAccepted() {
    chat.phase = "joined";
    chat.rejoining = false;
    sessionStorage.setItem("corral-chat-nick", chat.nick);
    sessionStorage.setItem(shownKey, JSON.stringify(chat.shown));
    showForms();
    ui.messageInput.focus();
  }

  function joinRefused(reason) {
    chat.phase = "nick";
    chat.rejoining = false;
    ui.joinError.textContent = reason;
    ui.joinError.hidden = false;
    showForms();
    ui.nickInput.focus();
    ui.nickInput.select();
  }

  // --- rendering -------------------------------------------------------------------------

  function showForms() {
    const inRoom = chat.phase === "joined" || chat.rejoining;
    ui.joinForm.hidden = inRoom;
    ui.messageForm.hidden = !inRoom;
    ui.joinButton.disabled = chat.phase === "joining";
    ui.joinButton.textContent = chat.phase === "joining" ? "Joining…" : "Join";
    ui.sendButton.disabled = chat.phase !== "joined";
    ui.ownNick.textContent = chat.nick;
    renderMembers();
  }

  function setStatus(state, text) {
    ui.status.dataset.state = state;
    ui.status.textContent = text;
  }

  function messageLine({ nick, text, at }) {
    const line = element("li", "message");
    if (nick === chat.nick && chat.phase !== "nick") line.classList.add("mine");
    const when = new Date(at);
    if (!Number.isNaN(when.getTime())) {
      const time = element("time", "at", when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
      time.dateTime = when.toISOString();
      time.title = when.toLocaleString();
      line.append(time);
    }
    line.append(element("span", "nick", String(nick)), element("span", "text", String(text)));
    return line;
  }

  // A message on the page, and among those kept for a reload.
  function show({ nick, text, at }, forceScroll = false) {
    addLine(messageLine({ nick, text, at }), forceScroll);
    chat.shown.push({ nick, text, at });
    if (chat.shown.length > KEPT_MESSAGES) chat.shown.shift();
    sessionStorage.setItem(shownKey, JSON.stringify(chat.shown));
  }

  function systemLine(text, kind = "info") {
    const line = element("li", `system ${kind}`, text);
    if (kind === "error") line.setAttribute("role", "alert");
    return line;
  }

  function addLine(line, forceScroll = false) {
    const follow = forceScroll || isNearBottom();
    ui.messages.append(line);
    while (ui.messages.childElementCount > MAX_LINES) ui.messages.firstElementChild.remove();
    if (follow) scrollToNewest();
  }

  function isNearBottom() {
    const list = ui.messages;
    return list.scrollHeight - list.scrollTop - list.clientHeight < 48;
  }

  function scrollToNewest() {
    ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  function renderMembers() {
    const nicks = [...chat.members].sort((a, b) => a.localeCompare(b));
    ui.members.replaceChildren(
      ...nicks.map((nick) => {
        const item = element("li", "member", nick);
        if (chat.phase === "joined" && nick === chat.nick) {
          item.classList.add("me");
          item.append(element("span", "you", " (you)"));
        }
        return item;
      }),
    );
    ui.memberCount.textContent = String(nicks.length);
  }

  // --- small helpers ---------------------------------------------------------------------

  function roomFromUrl() {
    const fromQuery = new URLSearchParams(location.search).get("room");
    return (fromQuery || roomFromHash() || "lobby").trim() || "lobby";
  }

  // #lobby, or #token=...&room=lobby when the page was given a token
  function roomFromHash() {
    const hash = location.hash.slice(1);
    if (token) return new URLSearchParams(hash).get("room") || "";
    try {
      return decodeURIComponent(hash);
    } catch {
      return hash; // a malformed %-escape: use the hash as written
    }
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // The nick a token carries (its "sub"), read without checking: the server checks.
  function nickOf(signed) {
    try {
      const part = signed.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const bytes = Uint8Array.from(atob(part), (char) => char.charCodeAt(0));
      const sub = JSON.parse(new TextDecoder().decode(bytes)).sub;
      return typeof sub === "string" ? sub : null;
    } catch {
      return null;
    }
  }

  function byId(id) {
    return document.getElementById(id);
  }

  // --- start -----------------------------------------------------------------------------

  ui.roomName.textContent = room;
  document.title = `#${room} — corral chat`;
  const signedNick = token ? nickOf(token) : null;
  ui.nickInput.value = signedNick || sessionStorage.getItem("corral-chat-nick") || "";
  ui.nickInput.readOnly = signedNick !== null;
  resumeAfterReload();
  showForms();
  ui.nickInput.focus();
  connect();

  // A reload of a page that was in the room: show what it showed, join again with the same
  // nick (the topic client resumes from the position it kept).
  function resumeAfterReload() {
    const nick = sessionStorage.getItem("corral-chat-nick");
    const kept = sessionStorage.getItem(shownKey); // set once this page joined this room
    if (kept === null) return;
    let shown;
    try {
      shown = JSON.parse(kept);
    } catch {
      return;
    }
    if (!nick || !Array.isArray(shown) || (signedNick && nick !== signedNick)) return;
    for (const message of shown) show(message);
    chat.nick = nick;
    chat.phase = "joining";
    chat.rejoining = true;
  }
})();
