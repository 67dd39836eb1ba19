// meshchat UI: peers on the left, the conversation on the right, live over server-sent events.
// Every piece of text from the network goes through textContent: a message "<script>" stays text.
"use strict";
const state = { me: null, peers: [], selected: null, messages: new Map() };
const $ = (id) => document.getElementById(id);
// The daemon puts its token into this page only; other pages cannot read it, so they cannot change anything.
const TOKEN = document.querySelector('meta[name="meshchat-token"]').content;
const post = (path, body) => fetch(path, {
  method: "POST", headers: { "Content-Type": "application/json", "X-Meshchat-Token": TOKEN },
  body: body === undefined ? undefined : JSON.stringify(body),
});

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderPeers() {
  const list = $("peers");
  list.replaceChildren();
  for (const peer of state.peers) {
    const item = el("li", peer.online ? "online" : "offline");
    item.dataset.ip = peer.mesh_ip;
    if (peer.mesh_ip === state.selected) item.classList.add("selected");
    item.append(el("span", "name", peer.name), el("span", "ip", peer.mesh_ip),
                el("span", "state " + (peer.online ? "online" : "offline"), peer.online ? "online" : "offline"));
    item.addEventListener("click", () => select(peer.mesh_ip));
    list.append(item);
  }
  $("no-peers").hidden = state.peers.length > 0;
  const peer = state.peers.find((p) => p.mesh_ip === state.selected);
  $("title").textContent = peer ? `${peer.name} · ${peer.mesh_ip} · ${peer.online ? "online" : "offline"}`
                                : "Select a peer on the left.";
  $("text").disabled = $("send").disabled = !peer;
}

function describe(message) {
  const time = new Date(message.created_at * 1000).toLocaleTimeString();
  if (message.direction === "in") return `received ${time}`;
  if (message.state === "delivered") return `delivered ✓ ${time}`;
  if (message.state === "failed") return `failed: ${message.reason || "unknown reason"}`;
  return `sending… ${time}`;
}

function renderMessages() {
  const list = $("messages");
  list.replaceChildren();
  const mine = [...state.messages.values()].filter((m) => m.peer_ip === state.selected)
    .sort((a, b) => a.created_at - b.created_at);
  for (const message of mine) {
    const item = el("li", `${message.direction} ${message.state}`, message.text);
    item.dataset.id = message.id;
    item.dataset.state = message.state;
    const meta = el("span", "meta", describe(message));
    if (message.direction === "out" && message.state === "failed") {
      const retry = el("button", "retry", "Retry");
      retry.type = "button";
      retry.addEventListener("click", () => post(`/api/messages/${encodeURIComponent(message.id)}/retry`));
      meta.append(retry);
    }
    item.append(meta);
    list.append(item);
  }
  list.scrollTop = list.scrollHeight;
}

async function select(ip) {
  state.selected = ip;
  renderPeers();
  const answer = await fetch(`/api/messages?peer=${encodeURIComponent(ip)}`);
  if (answer.ok) for (const m of (await answer.json()).messages) state.messages.set(`${m.direction}:${m.id}`, m);
  renderMessages();
  $("text").focus();
}

function connect() {
  const events = new EventSource("/api/events");
  events.addEventListener("open", () => { $("link").textContent = "live"; $("link").classList.remove("down"); });
  events.addEventListener("error", () => { $("link").textContent = "reconnecting"; $("link").classList.add("down"); });
  events.addEventListener("state", (event) => {
    const data = JSON.parse(event.data);
    state.me = data;
    state.peers = data.peers;
    $("me").textContent = data.agent === "connected" ? `${data.name} · ${data.mesh_ip}` : "local agent unreachable";
    renderPeers();
  });
  events.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    state.messages.set(`${message.direction}:${message.id}`, message);
    if (message.peer_ip === state.selected) renderMessages();
  });
}

$("compose").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (!text.trim() || !state.selected) return;
  $("text").value = "";
  const answer = await post("/api/messages", { peer: state.selected, text }).catch(() => null);
  if (!answer || !answer.ok) {
    const reason = answer ? (await answer.json()).description : "the chat daemon is unreachable";
    const failed = { id: `local-${Date.now()}`, peer_ip: state.selected, direction: "out", text,
                     state: "failed", reason, created_at: Date.now() / 1000 };
    state.messages.set(`out:${failed.id}`, failed);
    renderMessages();
  }
});

connect();
