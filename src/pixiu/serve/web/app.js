// pixiu web UI: chat (streams from /v1/chat/completions), arena and ranking (/ui/api/*).
// No framework, no build step, nothing fetched from outside: the page must work on an offline machine.
// Safety rule: model output only reaches the DOM through textContent or renderMarkdown, which escapes
// &<>"' FIRST and then adds a fixed set of tags that carry no attributes, so a reply can never inject markup.
"use strict";

const $ = (id) => document.getElementById(id);
const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => ESC[c]);

// ---- escaped markdown: fences, inline code, bold, italic, headings, lists, line breaks -------------------
function inline(s) { // s is already escaped; code spans are cut out first so ** inside them stays literal
  return s.split(/(`[^`\n]+`)/).map((part, i) => i % 2
    ? `<code>${part.slice(1, -1)}</code>`
    : part.replace(/\*\*(?=\S)(.+?)\*\*/g, "<strong>$1</strong>")
      .replace(/(^|[^*\w])\*(?=[^\s*])(.+?)\*(?![*\w])/g, "$1<em>$2</em>")
      .replace(/(^|\W)_(?=\S)(.+?)_(?!\w)/g, "$1<em>$2</em>")).join("");
}

const BLOCKS = [ // [test, render(lines, i) -> [html, next i]]
  [/^\s*```/, (L, i) => {
    const code = [];
    for (i++; i < L.length && !/^\s*```/.test(L[i]); i++) code.push(L[i]);
    return [`<pre><code>${code.join("\n")}</code></pre>`, i + 1];
  }],
  [/^#{1,6} /, (L, i) => [`<h4>${inline(L[i].replace(/^#+ /, ""))}</h4>`, i + 1]],
  [/^\s*[-*+] /, (L, i) => list(L, i, /^\s*[-*+] /, "ul")],
  [/^\s*\d+[.)] /, (L, i) => list(L, i, /^\s*\d+[.)] /, "ol")],
];

function list(L, i, re, tag) {
  const items = [];
  for (; i < L.length && re.test(L[i]); i++) items.push(`<li>${inline(L[i].replace(re, ""))}</li>`);
  return [`<${tag}>${items.join("")}</${tag}>`, i];
}

function renderMarkdown(text) {
  const L = escapeHtml(text).replace(/\r\n?/g, "\n").split("\n");
  const out = [];
  for (let i = 0; i < L.length;) {
    if (!L[i].trim()) { i++; continue; }
    const block = BLOCKS.find(([re]) => re.test(L[i]));
    if (block) { const [html, next] = block[1](L, i); out.push(html); i = next; continue; }
    const para = [];
    for (; i < L.length && L[i].trim() && !BLOCKS.some(([re]) => re.test(L[i])); i++) para.push(inline(L[i]));
    out.push(`<p>${para.join("<br>")}</p>`);
  }
  return out.join("");
}

// ---- small helpers -------------------------------------------------------------------------------------
function sampling() {
  return { temperature: +$("temperature").value, top_p: +$("top_p").value, max_tokens: +$("max_tokens").value };
}
const annotator = () => $("annotator").value.trim();

function withSystem(messages) {
  const sys = $("system").value.trim();
  return sys ? [{ role: "system", content: sys }, ...messages] : messages;
}

async function errorText(res) {
  if (res.status === 401) return "Not authorised: open the link with ?key=YOUR_KEY once.";
  try {
    const j = await res.json();
    const d = j.error?.message ?? j.detail;
    if (Array.isArray(d)) return d.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ");
    return typeof d === "string" ? d : JSON.stringify(j);
  } catch { return `HTTP ${res.status}`; }
}

async function postJSON(url, body) {
  const res = await fetch(url, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(await errorText(res));
  return res.json();
}

function status(id, text, kind = "") { const el = $(id); el.textContent = text; el.className = `status ${kind}`; }

async function busy(button, fn) { // disable while running; report errors in the tab's status line
  button.disabled = true;
  try { await fn(); } finally { button.disabled = false; }
}

// ---- chat ------------------------------------------------------------------------------------------------
const chat = { history: [], controller: null };

// Reads an OpenAI SSE stream: events separated by a blank line, "data: {json}" lines, "data: [DONE]" at the end.
async function streamChat(body, onText, signal, onSources = () => {}) {
  const res = await fetch("/v1/chat/completions", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ ...body, stream: true }), signal,
  });
  if (!res.ok) throw new Error(await errorText(res));
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf = (buf + decoder.decode(value, { stream: true })).replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const event = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        if (chunk.sources) onSources(chunk.sources); // pixiu serve --rag: the passages the reply may cite
        const piece = chunk.choices?.[0]?.delta?.content;
        if (piece) onText(piece);
      }
    }
  }
}

function addMessage(role, text) {
  $("chat-empty").hidden = true;
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  const who = document.createElement("div");
  who.className = "who";
  who.textContent = role === "user" ? "You" : $("model").value || "assistant";
  const body = document.createElement("div");
  body.className = "md";
  if (role === "user") body.textContent = text; else body.innerHTML = renderMarkdown(text);
  div.append(who, body);
  $("chat-log").append(div);
  $("chat-log").scrollTop = $("chat-log").scrollHeight;
  return body;
}

async function sendChat(event) {
  event.preventDefault();
  const text = $("chat-input").value.trim();
  if (!text || chat.controller) return;
  $("chat-input").value = "";
  chat.history.push({ role: "user", content: text });
  addMessage("user", text);
  const target = addMessage("assistant", "");
  target.classList.add("streaming");
  let reply = "", finished = false;
  chat.controller = new AbortController();
  $("chat-stop").hidden = false;
  $("chat-send").disabled = true;
  status("chat-status", "");
  try {
    const s = sampling();
    await streamChat({ model: $("model").value, messages: withSystem(chat.history), ...s }, (piece) => {
      reply += piece;
      target.innerHTML = renderMarkdown(reply);
      $("chat-log").scrollTop = $("chat-log").scrollHeight;
    }, chat.controller.signal, (sources) => showSources(target, sources));
    finished = true;
  } catch (e) {
    if (e.name !== "AbortError") status("chat-status", e.message, "error");
  } finally {
    target.classList.remove("streaming");
    if (reply || finished) chat.history.push({ role: "assistant", content: reply });
    else { chat.history.pop(); target.parentElement.remove(); } // failed or stopped before any text
    if (finished && !reply) { target.textContent = "(empty reply)"; target.classList.add("muted"); }
    chat.controller = null;
    $("chat-stop").hidden = true;
    $("chat-send").disabled = false;
  }
}

// Retrieved passages under a reply, numbered as the reply cites them ([1], [2], ...).
function showSources(target, sources) {
  const list = document.createElement("ol");
  list.className = "sources";
  for (const src of sources) {
    const item = document.createElement("li");
    item.value = src.index;
    const title = document.createElement("b");
    title.textContent = `[${src.index}] ${src.title}`;
    const text = document.createElement("div");
    text.textContent = src.text.length > 240 ? src.text.slice(0, 240) + "…" : src.text;
    item.title = src.source;
    item.append(title, text);
    list.append(item);
  }
  target.parentElement.append(list);
}

function resetChat() {
  chat.controller?.abort();
  chat.history = [];
  $("chat-log").querySelectorAll(".msg").forEach((m) => m.remove());
  $("chat-empty").hidden = false;
  status("chat-status", "");
}

async function saveChat() {
  if (!chat.history.length) return status("chat-status", "Nothing to save yet.", "error");
  try {
    await postJSON("/ui/api/chat", { messages: withSystem(chat.history), model: $("model").value, annotator: annotator() });
    status("chat-status", "Conversation saved.", "ok");
  } catch (e) { status("chat-status", e.message, "error"); }
}

// ---- arena -----------------------------------------------------------------------------------------------
const arena = { battleId: null };
const voteButtons = () => document.querySelectorAll(".vote");

async function startBattle(event) {
  event.preventDefault();
  const text = $("arena-input").value.trim();
  if (!text) return;
  arena.battleId = null;
  voteButtons().forEach((b) => { b.disabled = true; b.classList.remove("chosen"); });
  for (const side of ["a", "b"]) { $(`arena-${side}`).textContent = "…"; $(`arena-model-${side}`).textContent = ""; }
  status("arena-status", "Generating both replies…");
  await busy($("arena-go"), async () => {
    try {
      const r = await postJSON("/ui/api/arena", { messages: withSystem([{ role: "user", content: text }]), sampling: sampling() });
      arena.battleId = r.battle_id;
      $("arena-a").innerHTML = renderMarkdown(r.reply_a);
      $("arena-b").innerHTML = renderMarkdown(r.reply_b);
      $("arena-single").hidden = !r.same_model;
      voteButtons().forEach((b) => { b.disabled = false; });
      status("arena-status", "Which reply is better?");
    } catch (e) {
      for (const side of ["a", "b"]) $(`arena-${side}`).textContent = "";
      status("arena-status", e.message, "error");
    }
  });
}

async function vote(button) {
  if (!arena.battleId) return;
  voteButtons().forEach((b) => { b.disabled = true; });
  try {
    const r = await postJSON("/ui/api/vote", { battle_id: arena.battleId, winner: button.dataset.winner, annotator: annotator() });
    arena.battleId = null;
    button.classList.add("chosen");
    $("arena-model-a").textContent = `· ${r.model_a}`;
    $("arena-model-b").textContent = `· ${r.model_b}`;
    status("arena-status", `Vote stored. A was ${r.model_a}, B was ${r.model_b}.`, "ok");
  } catch (e) {
    voteButtons().forEach((b) => { b.disabled = false; });
    status("arena-status", e.message, "error");
  }
}

// ---- ranking ---------------------------------------------------------------------------------------------
const rank = { sampleId: null, replies: [], order: [], edited: false };
const LETTERS = "ABCDEF";

function moveReply(from, to) { // positions in rank.order
  const [idx] = rank.order.splice(from, 1);
  rank.order.splice(to, 0, idx);
  renderRanking();
}

function rankCard(idx, pos) {
  const li = document.createElement("li");
  li.className = "card rankcard";
  li.draggable = true;
  li.dataset.reply = String(idx);
  const head = document.createElement("div");
  head.className = "rankhead";
  const label = document.createElement("span");
  label.className = "letter";
  label.textContent = `Reply ${LETTERS[idx]}`;
  const select = document.createElement("select");
  select.className = "rank-select";
  select.setAttribute("aria-label", `rank of reply ${LETTERS[idx]}`);
  rank.order.forEach((_, p) => select.add(new Option(p === 0 ? "1 (best)" : String(p + 1), String(p))));
  select.value = String(pos);
  select.addEventListener("change", () => moveReply(pos, +select.value));
  head.append(label, select);
  const body = document.createElement("div");
  body.className = "md";
  body.innerHTML = renderMarkdown(rank.replies[idx]);
  li.append(head, body);
  li.addEventListener("dragstart", (e) => { e.dataTransfer.setData("text/plain", String(pos)); li.classList.add("dragging"); });
  li.addEventListener("dragend", () => li.classList.remove("dragging"));
  li.addEventListener("dragover", (e) => { e.preventDefault(); li.classList.add("over"); });
  li.addEventListener("dragleave", () => li.classList.remove("over"));
  li.addEventListener("drop", (e) => { e.preventDefault(); moveReply(+e.dataTransfer.getData("text/plain"), pos); });
  return li;
}

function renderRanking() {
  $("rank-list").replaceChildren(...rank.order.map((idx, pos) => rankCard(idx, pos)));
  if (!rank.edited) $("rank-edit").value = rank.replies[rank.order[0]] ?? "";
}

async function sampleReplies(event) {
  event.preventDefault();
  const text = $("rank-input").value.trim();
  if (!text) return;
  status("rank-status", "Sampling replies…");
  await busy($("rank-go"), async () => {
    try {
      const body = { messages: withSystem([{ role: "user", content: text }]), model: $("model").value, k: +$("rank-k").value, sampling: sampling() };
      const r = await postJSON("/ui/api/rank/sample", body);
      Object.assign(rank, { sampleId: r.sample_id, replies: r.replies, order: r.replies.map((_, i) => i), edited: false });
      $("rank-edit-on").checked = false;
      $("rank-edit").hidden = true;
      $("rank-help").hidden = false;
      $("rank-edit-box").hidden = false;
      renderRanking();
      status("rank-status", "");
    } catch (e) { status("rank-status", e.message, "error"); }
  });
}

async function submitRanking() {
  if (!rank.sampleId) return;
  const edited = $("rank-edit-on").checked ? $("rank-edit").value : null;
  await busy($("rank-submit"), async () => {
    try {
      await postJSON("/ui/api/rank", { sample_id: rank.sampleId, order: rank.order, edited, annotator: annotator() });
      rank.sampleId = null;
      $("rank-edit-box").hidden = true;
      // the cards only: a reply's own markdown lists hold <li> too
      $("rank-list").querySelectorAll(":scope > li").forEach((li) => { li.draggable = false; li.querySelector("select").disabled = true; });
      const best = rank.order.map((i) => LETTERS[i]).join(" > ");
      status("rank-status", `Ranking stored: ${best}.`, "ok");
    } catch (e) { status("rank-status", e.message, "error"); }
  });
}

// ---- setup -----------------------------------------------------------------------------------------------
async function loadModels() {
  try {
    const res = await fetch("/v1/models");
    if (!res.ok) throw new Error(await errorText(res));
    const ids = (await res.json()).data.map((m) => m.id);
    $("model").replaceChildren(...ids.map((id) => new Option(id, id)));
    $("arena-single").hidden = ids.length !== 1;
  } catch (e) { status("chat-status", `Could not list models: ${e.message}`, "error"); }
}

function showTab(name) {
  document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t.dataset.tab === name));
  document.querySelectorAll(".panel").forEach((p) => p.classList.toggle("active", p.id === `tab-${name}`));
}

function bindSliders() {
  for (const id of ["temperature", "top_p"]) {
    const show = () => { $(`${id}-val`).textContent = (+$(id).value).toFixed(2); };
    $(id).addEventListener("input", show);
    show();
  }
}

function init() {
  $("annotator").value = localStorage.getItem("pixiu.annotator") || "";
  $("annotator").addEventListener("input", () => localStorage.setItem("pixiu.annotator", annotator()));
  document.querySelectorAll(".tab").forEach((t) => t.addEventListener("click", () => showTab(t.dataset.tab)));
  bindSliders();
  $("chat-form").addEventListener("submit", sendChat);
  $("chat-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("chat-form").requestSubmit(); }
  });
  $("chat-stop").addEventListener("click", () => chat.controller?.abort());
  $("chat-reset").addEventListener("click", resetChat);
  $("chat-save").addEventListener("click", saveChat);
  $("arena-form").addEventListener("submit", startBattle);
  voteButtons().forEach((b) => b.addEventListener("click", () => vote(b)));
  $("rank-form").addEventListener("submit", sampleReplies);
  $("rank-edit-on").addEventListener("change", () => { $("rank-edit").hidden = !$("rank-edit-on").checked; });
  $("rank-edit").addEventListener("input", () => { rank.edited = true; });
  $("rank-submit").addEventListener("click", submitRanking);
  loadModels();
}

document.addEventListener("DOMContentLoaded", init);
