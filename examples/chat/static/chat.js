// corral chat: the browser side of examples/chat.
//
// One WebSocket per page at /ws/<room> on the page's own host, JSON text frames:
//   to the server:   {type: "join", nick, epoch?, offset?}   {type: "say", text, id}
//   from the server: history {messages: [{nick, text, at}], topic, epoch, offset},
//                    members {nicks}, joined {nick}, left {nick},
//                    said {nick, text, at, topic, epoch, offset}, sent {id}, error {reason, id?},
//                    subscribed {topic, epoch, offset}, unrecoverable {why, asked, current, ...}
// Resume: the page keeps the position (epoch, offset) of the last message it showed, and joins
// again with it after a drop, so it gets exactly what was said meanwhile, once each (a said at
// or before the position held is a duplicate and is dropped). The position, the nick and the
// last messages shown live in sessionStorage: a reload shows them and resumes from there. When
// the server cannot resume from it ("unrecoverable": the room's history started again, or no
// longer keeps what followed) the page says so, then shows what the room still keeps.
// A message stays in the input until the server says it is "sent" (the room has it): if the
// room is moving to another server, or the connection drops, what was typed is still there.
// When the connection drops it reconnects with exponential backoff and joins again with the
// same nick. All server text goes into the page through textContent, never as HTML.
// A chat run with a secret needs a signed token, given to the page in its fragment
// (#token=...&room=...: never sent to the server): the page offers it as the subprotocol
// "bearer.<token>" (a browser cannot set headers on a WebSocket), and the token's nick is the
// only one the server takes.
"use strict";

(() => {
  const MAX_TEXT_BYTES = 4096;
  const BACKOFF_FIRST_MS = 500;
  const BACKOFF_MAX_MS = 10_000;
  const STABLE_AFTER_MS = 5_000; // a connection this old resets the backoff when it drops
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
  const shownKey = `corral-chat-shown:${room}`;
  const positionKey = `corral-chat-position:${room}`;
  const chat = {
    socket: null,
    phase: "nick", // "nick": asking for one; "joining": join sent or due; "joined"
    nick: "",
    rejoining: false, // joined before this connection dropped: keep showing the room
    members: new Set(),
    position: null, // {epoch, offset} of the last message shown: where to resume from
    shown: [], // the last messages shown, kept for a reload
    says: 0, // ids given to says so far
    unconfirmed: new Map(), // say id -> its text, until "sent" or an error
    attempt: 0, // reconnects since the last stable connection
    openedAt: 0,
    retryAt: 0,
    retryTimer: 0,
    countdownTimer: 0,
  };

  // --- connection ------------------------------------------------------------------------

  function connect() {
    stopRetryTimers();
    setStatus("connecting", "Connecting…");
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${scheme}//${location.host}/ws/${encodeURIComponent(room)}`;
    const socket = token ? new WebSocket(url, ["chat", `bearer.${token}`]) : new WebSocket(url);
    chat.socket = socket;
    socket.addEventListener("open", () => {
      chat.openedAt = Date.now();
      setStatus("connected", "Connected");
      if (chat.phase !== "nick") send(joinFrame());
    });
    socket.addEventListener("message", (event) => receive(event.data));
    socket.addEventListener("close", () => {
      if (chat.socket !== socket) return;
      chat.socket = null;
      if (chat.openedAt !== 0) addLine(systemLine("Connection lost", "error"));
      if (chat.unconfirmed.size) {
        chat.unconfirmed.clear();
        addLine(systemLine("Your last message may not have been sent: it is still in the box", "error"));
      }
      if (chat.phase === "joined") {
        chat.phase = "joining"; // join again, same nick, once back
        chat.rejoining = true;
      }
      showForms();
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    const wasStable = chat.openedAt !== 0 && Date.now() - chat.openedAt > STABLE_AFTER_MS;
    if (wasStable) chat.attempt = 0;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** chat.attempt);
    const delay = Math.min(BACKOFF_MAX_MS, base * (0.8 + 0.4 * Math.random()));
    chat.attempt += 1;
    chat.openedAt = 0;
    chat.retryAt = Date.now() + delay;
    chat.retryTimer = setTimeout(connect, delay);
    chat.countdownTimer = setInterval(showCountdown, 250);
    showCountdown();
    ui.reconnectButton.hidden = false;
  }

  function showCountdown() {
    const seconds = Math.max(1, Math.ceil((chat.retryAt - Date.now()) / 1000));
    setStatus("disconnected", `Disconnected — reconnecting in ${seconds} s…`);
  }

  function stopRetryTimers() {
    clearTimeout(chat.retryTimer);
    clearInterval(chat.countdownTimer);
    ui.reconnectButton.hidden = true;
  }

  function send(message) {
    if (!isOpen()) return false;
    chat.socket.send(JSON.stringify(message));
    return true;
  }

  function isOpen() {
    return chat.socket !== null && chat.socket.readyState === WebSocket.OPEN;
  }

  // --- what the server says --------------------------------------------------------------

  const handlers = {
    history(frame) {
      if (chat.phase === "joining") joinAccepted();
      ui.messages.replaceChildren();
      chat.shown = [];
      for (const message of frame.messages || []) show(message);
      hold(frame, true);
      scrollToNewest();
    },
    subscribed(frame) {
      hold(frame, false); // the join resumes from here: what was missed follows
    },
    unrecoverable(frame) {
      const why = {
        epoch: "the room's history started again since",
        trimmed: "the room no longer keeps them",
        future: "the room's history is not the one this page knew",
      }[frame.why] || "the room cannot tell";
      addLine(systemLine(`Some messages were missed while you were away: ${why}. What the room still keeps follows.`, "error"), true);
      hold(frame, true);
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
      if (isDuplicate(message)) return;
      show(message, message.nick === chat.nick);
      hold(message, false);
    },
    sent({ id }) {
      const text = chat.unconfirmed.get(id);
      chat.unconfirmed.delete(id);
      if (text !== undefined && ui.messageInput.value === text) ui.messageInput.value = "";
      showForms();
    },
    error({ reason, id }) {
      const text = String(reason || "unknown error");
      if (chat.unconfirmed.delete(id)) {
        addLine(systemLine(`Not sent: ${text} (your text is kept)`, "error"), true);
        showForms();
        return;
      }
      // Anything about the nick or joining means we are not in the room: ask again.
      if (chat.phase === "joining" || /nick|join/i.test(text)) joinRefused(text);
      else addLine(systemLine(`Error: ${text}`, "error"), true);
    },
  };

  function receive(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      console.warn("corral chat: ignoring a frame that is not JSON", data);
      return;
    }
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
    send(joinFrame()); // or on open, if we are between connections
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
    const id = ++chat.says;
    if (send({ type: "say", text, id })) chat.unconfirmed.set(id, text);
    showForms();
  });

  ui.reconnectButton.addEventListener("click", () => {
    chat.attempt = 0;
    connect();
  });

  // Offline, a socket may look open for minutes: close it (the page resumes once back online);
  // back online, connect at once rather than when the backoff says.
  window.addEventListener("offline", () => chat.socket?.close(4000, "offline"));
  window.addEventListener("online", () => {
    if (chat.socket !== null) return;
    chat.attempt = 0;
    connect();
  });

  window.addEventListener("hashchange", () => {
    if (roomFromUrl() !== room) location.reload();
  });

  // --- position (resume) -----------------------------------------------------------------

  // Keep a frame's position as the one to resume from: always if `replace` (a history, or the
  // server's answer that the old one is lost), else unless a later one of its epoch is held.
  function hold({ epoch, offset }, replace) {
    if (typeof epoch !== "string" || !Number.isInteger(offset)) return; // a said without one
    const held = chat.position;
    if (!replace && held && held.epoch === epoch && held.offset >= offset) return;
    chat.position = { epoch, offset };
    sessionStorage.setItem(positionKey, JSON.stringify(chat.position));
  }

  // A join from the position held, if any (else the server sends the history).
  function joinFrame() {
    return { type: "join", nick: chat.nick, ...(chat.position || {}) };
  }

  // A said at or before the position held (its epoch) was shown already.
  function isDuplicate({ epoch, offset }) {
    const held = chat.position;
    return held !== null && held.epoch === epoch && Number.isInteger(offset) && offset <= held.offset;
  }

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
    ui.sendButton.textContent = chat.unconfirmed.size ? "Sending…" : "Send";
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
    if (chat.phase !== "nick") sessionStorage.setItem(shownKey, JSON.stringify(chat.shown));
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

  // A reload of a page that was in the room: show what it showed, and join again with the same
  // nick from the position it kept (the messages said since follow).
  function resumeAfterReload() {
    const nick = sessionStorage.getItem("corral-chat-nick");
    let shown, position;
    try {
      shown = JSON.parse(sessionStorage.getItem(shownKey));
      position = JSON.parse(sessionStorage.getItem(positionKey));
    } catch {
      return;
    }
    if (!nick || !Array.isArray(shown) || position === null) return;
    if (signedNick && nick !== signedNick) return;
    chat.nick = nick;
    chat.phase = "joining";
    chat.rejoining = true;
    for (const message of shown) show(message);
    hold(position, true);
  }
})();
