// The page of `assistant serve`: ask (the answer streams in), citation chips that open the article at
// the quote's exact offsets, the closest passages of a decline, follow-ups with their stand-alone
// question, file and date filters, and a topic's timeline as inline SVG. Plain JS, nothing loaded
// from elsewhere; the API it reads is described at /docs.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const state = { history: [], articles: new Map(), busy: false };

// -- talking to the server -------------------------------------------------------------------------

function token() { return sessionStorage.getItem("assistant-token") || ""; }

async function api(path, options = {}) {
  const headers = {};
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  if (token()) headers.Authorization = "Bearer " + token();
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) { $("token-box").hidden = false; }
  return response;
}

async function failure(response) {
  const body = await response.json().catch(() => ({}));
  return new Error((body.error && body.error.message) || `the server answered ${response.status}`);
}

async function getJSON(path) {
  const response = await api(path);
  if (!response.ok) throw await failure(response);
  return response.json();
}

// Yield each JSON line of a streamed response as it arrives.
async function* jsonLines(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl).trim();
      buffer = buffer.slice(nl + 1);
      if (line) yield JSON.parse(line);
    }
  }
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

// -- filters ---------------------------------------------------------------------------------------

function filters() {
  const out = {};
  const files = [...$("files").selectedOptions].map((o) => o.value);
  if (files.length) out.files = files;
  if ($("since").value) out.since = $("since").value;
  if ($("until").value) out.until = $("until").value;
  return out;
}

function showFilters() {
  const f = filters();
  const parts = [];
  if (f.files) parts.push(f.files.length === 1 ? f.files[0] : `${f.files.length} files`);
  if (f.since) parts.push(`since ${f.since}`);
  if (f.until) parts.push(`until ${f.until}`);
  $("filter-summary").textContent = parts.length ? `(${parts.join(", ")})` : "";
}

async function loadFiles() {
  try {
    const { files } = await getJSON("/v1/files");
    $("files").replaceChildren(...files.map((f) => el("option", { value: f.file },
      f.date ? `${f.file} (${f.date})` : f.file)));
  } catch (err) { /* the token is missing: asked for when the first question fails */ }
}

// -- asking ----------------------------------------------------------------------------------------

async function ask(question) {
  question = question.trim();
  if (!question || state.busy) return;
  setBusy(true);
  const answerEl = el("div", { class: "answer", "data-deltas": "0" });
  const turn = el("div", { class: "turn waiting" }, el("div", { class: "question" }, question),
    el("div", { class: "standalone", hidden: "" }), answerEl);
  $("conversation").append(turn);
  turn.scrollIntoView({ block: "nearest" });
  let text = "";
  let final = null;
  try {
    const body = { question, ...filters() };
    if (state.history.length) body.history = state.history;
    const response = await api("/v1/ask/stream", { method: "POST", body: JSON.stringify(body) });
    if (!response.ok) throw await failure(response);
    for await (const event of jsonLines(response)) {
      if (event.type === "delta") {
        text += event.text;
        answerEl.textContent = text;
        answerEl.dataset.deltas = String(Number(answerEl.dataset.deltas) + 1);
      } else if (event.type === "revision") {
        text = event.text.replace(/^\n/, "");  // the checks changed the draft: this replaces it
        answerEl.textContent = text;
      } else if (event.type === "standalone") {
        showStandalone(turn, question, event.text);
      } else if (event.type === "answer") {
        final = event.answer;
      } else if (event.type === "error") {
        throw new Error(event.error.message);
      }
    }
    if (!final) throw new Error("the server stopped before the answer was finished");
    renderAnswer(turn, final);
    state.history.push({ question, answer: final.answer });
  } catch (err) {
    turn.append(el("div", { class: "error" }, String(err.message || err)));
  } finally {
    turn.classList.remove("waiting");
    setBusy(false);
  }
}

function setBusy(busy) {
  state.busy = busy;
  $("ask").disabled = busy;
}

function showStandalone(turn, question, standalone) {
  const node = turn.querySelector(".standalone");
  if (!standalone || standalone === question) return;
  node.textContent = `searched as: ${standalone}`;
  node.hidden = false;
}

function chip(label, citation) {
  return el("button", { type: "button", class: "chip", "data-label": label, "data-file": citation.file,
    "data-start": String(citation.start), "data-end": String(citation.end), title: citation.file,
    onclick: (e) => openAt(citation.file, citation.start, citation.end, e.currentTarget) }, label);
}

function renderAnswer(turn, answer) {
  turn.classList.toggle("declined", answer.declined);
  turn.dataset.declined = String(answer.declined);
  showStandalone(turn, answer.question, answer.standalone_question);
  const answerEl = turn.querySelector(".answer");
  answerEl.replaceChildren();
  const byLabel = new Map();
  for (const c of answer.citations) if (!byLabel.has(c.label)) byLabel.set(c.label, c);
  const labels = /\[(S\d+(?:\s*[,;]\s*S\d+)*)\]/g;
  let last = 0;
  for (let m; (m = labels.exec(answer.answer));) {
    answerEl.append(answer.answer.slice(last, m.index));
    for (const label of m[1].split(/\s*[,;]\s*/)) {
      answerEl.append(byLabel.has(label) ? chip(label, byLabel.get(label)) : `[${label}]`);
    }
    last = labels.lastIndex;
  }
  answerEl.append(answer.answer.slice(last));
  if (answer.declined) {
    const verdict = (answer.verdicts || []).find((v) => v.name === answer.decline_reason);
    if (verdict && verdict.reason) turn.append(el("div", { class: "reason" }, `Why: ${verdict.reason}`));
    if (answer.sources && answer.sources.length) {
      turn.append(el("div", { class: "reason" }, "Closest passages:"), el("ul", { class: "passages" },
        ...answer.sources.map((p) => el("li", { tabindex: "0", title: "open the article at this passage",
          onclick: () => openAt(p.file, p.start, p.end) },
          el("span", { class: "file" }, `${p.file} [${p.start}:${p.end}] `), clip(p.text, 240)))));
    }
  }
  if (answer.citations.length) {
    turn.append(el("ul", { class: "citations" }, ...answer.citations.map((c) => el("li", {},
      chip(c.label, c), el("span", { class: "file" }, ` ${c.file} `),
      el("span", { class: "quote" }, `“${clip(c.quote, 200)}”`), c.inferred ? " (inferred)" : null))));
  }
  for (const note of answer.notes || []) turn.append(el("div", { class: "notes" }, `Note: ${note}`));
}

function clip(text, n) {
  const flat = text.split(/\s+/).join(" ").trim();
  return flat.length <= n ? flat : flat.slice(0, n).replace(/\s+\S*$/, "") + " …";
}

// -- the article viewer ----------------------------------------------------------------------------

async function openAt(file, start, end, fromChip) {
  document.querySelectorAll("button.chip.open").forEach((b) => b.classList.remove("open"));
  if (fromChip) fromChip.classList.add("open");
  let article = state.articles.get(file);
  if (!article) {
    try {
      article = await getJSON("/v1/files/" + encodeURIComponent(file));
    } catch (err) {
      $("viewer").hidden = false;
      $("viewer-title").textContent = file;
      $("viewer-text").replaceChildren(el("div", { class: "error" }, String(err.message || err)));
      return;
    }
    state.articles.set(file, article);
  }
  const text = article.text;
  const mark = el("mark", { id: "highlight", "data-start": String(start), "data-end": String(end) },
    text.slice(start, end));
  $("viewer-text").replaceChildren(text.slice(0, start), mark, text.slice(end));
  $("viewer-title").textContent = article.title || file;
  $("viewer-meta").textContent = [file, article.date, `characters ${start}–${end}`].filter(Boolean).join(" · ");
  $("viewer").hidden = false;
  mark.scrollIntoView({ block: "center" });
}

// -- the timeline ----------------------------------------------------------------------------------

function dayOf(date) {  // "2023", "2023-04" or "2023-04-02": the first day of the period, in ms
  const [y, m = "01", d = "01"] = date.split("-");
  return Date.UTC(Number(y), Number(m) - 1, Number(d));
}

function ticks(lo, hi) {
  const years = (hi - lo) / (365.25 * 864e5);
  const out = [];
  const first = new Date(lo);
  if (years > 2) {
    const step = Math.max(1, Math.ceil(years / 8));
    for (let y = first.getUTCFullYear(); Date.UTC(y, 0, 1) <= hi; y += step) {
      if (Date.UTC(y, 0, 1) >= lo) out.push([Date.UTC(y, 0, 1), String(y)]);
    }
  } else {
    const months = Math.max(1, Math.ceil(years * 12 / 8));
    for (let t = Date.UTC(first.getUTCFullYear(), first.getUTCMonth(), 1), i = 0; t <= hi;
      i += months, t = Date.UTC(first.getUTCFullYear(), first.getUTCMonth() + i, 1)) {
      if (t >= lo) out.push([t, new Date(t).toISOString().slice(0, 7)]);
    }
  }
  return out;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

// Stack labels in rows so that none overlaps another in its row (`span` gives a label's [left, right]).
function rows(events, span) {
  const taken = [];
  return events.map((e) => {
    const [left, right] = span(e);
    let row = taken.findIndex((spans) => spans.every(([l, r]) => right + 8 < l || left > r + 8));
    if (row < 0) { row = taken.length; taken.push([]); }
    taken[row].push([left, right]);
    return row;
  });
}

function renderTimeline(data) {
  const box = $("timeline");
  const events = data.events.map((e, index) => ({ ...e, index }));
  if (!events.length) {
    box.replaceChildren(el("p", { class: "notes" }, `No dated events found for “${data.topic}”.`),
      ...data.notes.map((n) => el("p", { class: "notes" }, n)));
    return;
  }
  const W = 900, pad = 40, rowH = 16, labelChars = 34;
  const times = events.map((e) => dayOf(e.date));
  let lo = Math.min(...times), hi = Math.max(...times);
  if (hi - lo < 30 * 864e5) { lo -= 15 * 864e5; hi += 15 * 864e5; }
  const x = (e) => pad + (dayOf(e.date) - lo) / (hi - lo) * (W - 2 * pad);
  const label = (e) => `${e.date}: ${clip(e.event, labelChars)}`;
  const width = (e) => label(e).length * 5.6;
  const flipped = (e) => x(e) + 4 + width(e) > W - 4;  // near the right edge: the label goes left of its mark
  const span = (e) => flipped(e) ? [x(e) - 4 - width(e), x(e)] : [x(e), x(e) + 4 + width(e)];
  const happened = events.filter((e) => e.status !== "planned");
  const planned = events.filter((e) => e.status === "planned");
  const upRows = rows(happened, span), downRows = rows(planned, span);
  const up = Math.max(0, ...upRows.map((r) => r + 1)), down = Math.max(0, ...downRows.map((r) => r + 1));
  const axisY = 30 + up * rowH + 14;
  const H = axisY + 34 + down * rowH + 14;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `Timeline of ${data.topic}` });
  root.append(svg("line", { class: "axis", x1: pad, x2: W - pad, y1: axisY, y2: axisY }),
    svg("text", { class: "lane", x: 4, y: 14 }, "happened"),
    svg("text", { class: "lane", x: 4, y: axisY + 30 }, "planned"));
  for (const [t, text] of ticks(lo, hi)) {
    const tx = pad + (t - lo) / (hi - lo) * (W - 2 * pad);
    root.append(svg("line", { class: "axis", x1: tx, x2: tx, y1: axisY - 4, y2: axisY + 4 }),
      svg("text", { class: "tick", x: tx, y: axisY + 16, "text-anchor": "middle" }, text));
  }
  const draw = (e, row, isPlanned) => {
    const ex = x(e);
    const ly = isPlanned ? axisY + 34 + row * rowH + 10 : axisY - 14 - row * rowH;
    const marker = isPlanned
      ? svg("rect", { x: ex - 5, y: axisY - 5, width: 10, height: 10, transform: `rotate(45 ${ex} ${axisY})` })
      : svg("circle", { cx: ex, cy: axisY, r: 5 });
    const c = e.citations[0];
    const g = svg("g", { class: `event ${isPlanned ? "planned" : "happened"}`, tabindex: "0",
      "data-index": String(e.index), "data-date": e.date, "data-status": e.status },
      svg("line", { class: "axis", x1: ex, x2: ex, y1: axisY, y2: ly + (isPlanned ? -10 : 3), "stroke-dasharray": "2 2" }),
      marker, svg("text", { class: "label", x: flipped(e) ? ex - 4 : ex + 4, y: ly,
        "text-anchor": flipped(e) ? "end" : "start" }, label(e)),
      svg("title", {}, `${e.date}${isPlanned ? " (planned)" : ""}: ${e.event}`));
    if (c) {
      g.addEventListener("click", () => openAt(c.file, c.start, c.end));
      g.addEventListener("keydown", (k) => { if (k.key === "Enter") openAt(c.file, c.start, c.end); });
    }
    root.append(g);
  };
  happened.forEach((e, i) => draw(e, upRows[i], false));
  planned.forEach((e, i) => draw(e, downRows[i], true));
  box.replaceChildren(root, el("div", { class: "legend" },
    "● happened (above the axis)  ◇ planned (below) — click an event to open its quote"),
    ...data.notes.map((n) => el("p", { class: "notes" }, n)));
}

async function drawTimeline(topic) {
  topic = topic.trim();
  if (!topic) return;
  const params = new URLSearchParams({ topic });
  const f = filters();
  if (f.since) params.set("since", f.since);
  if (f.until) params.set("until", f.until);
  $("draw-timeline").disabled = true;
  $("timeline").replaceChildren(el("p", { class: "notes" }, "reading the articles for dated events…"));
  try {
    renderTimeline(await getJSON("/v1/timeline?" + params));
  } catch (err) {
    $("timeline").replaceChildren(el("p", { class: "error" }, String(err.message || err)));
  } finally {
    $("draw-timeline").disabled = false;
  }
}

// -- wiring ----------------------------------------------------------------------------------------

$("ask-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const question = $("question").value;
  $("question").value = "";
  ask(question);
});
$("question").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("ask-form").requestSubmit(); }
});
$("new-conversation").addEventListener("click", () => {
  state.history = [];
  $("conversation").replaceChildren();
});
$("timeline-form").addEventListener("submit", (e) => { e.preventDefault(); drawTimeline($("topic").value); });
$("close-viewer").addEventListener("click", () => { $("viewer").hidden = true; });
for (const id of ["files", "since", "until"]) $(id).addEventListener("change", showFilters);
$("clear-filters").addEventListener("click", () => {
  for (const o of $("files").options) o.selected = false;
  $("since").value = $("until").value = "";
  showFilters();
});
$("token").addEventListener("change", (e) => {
  sessionStorage.setItem("assistant-token", e.target.value.trim());
  loadFiles();
});

loadFiles();
const params = new URLSearchParams(location.search);
if (params.get("topic")) { $("topic").value = params.get("topic"); drawTimeline(params.get("topic")); }
if (params.get("q")) ask(params.get("q"));
