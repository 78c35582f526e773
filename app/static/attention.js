// Attention viewer: fills the model list from /v1/models (classifiers and text generators), fetches
// /v1/attention, draws lines or a matrix and the prediction (label scores, or next-token top-k).
// URL parameters text, model, layer, head, aggregate and view preset the form; with text, it runs on load.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const state = { data: null };

function svgEl(name, attrs, text) {
  const el = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, value);
  if (text !== undefined) el.textContent = text;
  return el;
}

function setStatus(message, isError) {
  $("status").textContent = message;
  $("status").className = isError ? "error" : "";
}

function fillNumbers(select, count, wanted) {
  const keep = String(wanted);
  select.replaceChildren();
  for (let i = 0; i < Math.max(count, Number(keep) + 1, 1); i += 1) {
    select.append(new Option(String(i), String(i)));
  }
  select.value = keep;
}

async function loadModels(wanted) {
  const response = await fetch("/v1/models");
  const body = await response.json();
  const select = $("model");
  for (const model of body.models.filter((m) => m.status === "ready" && (m.capabilities || []).includes("attention"))) {
    select.append(new Option(`${model.name} (${model.task})`, model.name));
  }
  if (wanted) select.value = wanted;
}

function requestBody() {
  const aggregate = $("aggregate").value;
  const body = { text: $("text").value, model: $("model").value || null, aggregate };
  if (aggregate !== "rollout") body.layers = [Number($("layer").value)];
  if (aggregate === "none") body.heads = [Number($("head").value)];
  return body;
}

async function show() {
  setStatus("computing…", false);
  const response = await fetch("/v1/attention", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(requestBody()),
  });
  const body = await response.json();
  if (!response.ok) {
    setStatus(body.error || `HTTP ${response.status}`, true);
    return;
  }
  state.data = body;
  fillNumbers($("layer"), body.num_layers, $("layer").value);
  fillNumbers($("head"), body.num_heads, $("head").value);
  drawPrediction(body.prediction);
  draw();
  setStatus(`${body.tokens.length} tokens, ${body.backend} backend`, false);
}

// Classification: the label and every label's probability. Next token: the most probable next tokens,
// quoted as JSON strings so that leading spaces and newlines show.
function drawPrediction(prediction) {
  const box = $("prediction");
  box.replaceChildren();
  box.dataset.type = prediction.type;
  const rows = prediction.type === "next_token"
    ? prediction.top_k.map((c) => [JSON.stringify(c.text), c.probability])
    : Object.entries(prediction.scores);
  const [best, score] = prediction.type === "next_token" ? rows[0] : [prediction.label, prediction.score];
  const head = document.createElement("div");
  head.append(prediction.type === "next_token" ? "Next token: " : "Prediction: ");
  const label = document.createElement("span");
  label.className = "label";
  label.textContent = best;
  head.append(label, ` (${score.toFixed(3)})`);
  box.append(head);
  for (const [name, p] of rows) {
    const line = document.createElement("div");
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.round(p * 150)}px`;
    line.append(`${name}`, bar, p.toFixed(3));
    box.append(line);
  }
}

function caption(data) {
  if (data.aggregate === "rollout") return `rollout through layers ${data.layers.join(", ")}`;
  if (data.aggregate === "mean") return `layer ${data.layers[0]}, mean of ${data.heads.length} heads`;
  return `layer ${data.layers[0]}, head ${data.heads[0]}`;
}

function draw() {
  const data = state.data;
  if (!data) return;
  const matrix = data.attentions[0][0];
  $("caption").textContent = `${data.model}: ${caption(data)}. Hover a token to highlight its weights.`;
  const svg = $("viz");
  svg.replaceChildren();
  svg.classList.remove("hover");
  if ($("view").value === "matrix") drawMatrix(svg, data.tokens, matrix);
  else drawLines(svg, data.tokens, matrix);
  svg.dataset.drawn = $("view").value;
}

function drawLines(svg, tokens, matrix) {
  const step = 22, width = 160, gap = 220, top = 24;
  const height = top + tokens.length * step;
  svg.setAttribute("width", String(2 * width + gap));
  svg.setAttribute("height", String(height));
  svg.append(svgEl("text", { x: width - 8, y: 14, "text-anchor": "end", fill: "#777" }, "query"));
  svg.append(svgEl("text", { x: width + gap + 8, y: 14, fill: "#777" }, "key"));
  const y = (i) => top + i * step + step / 2;
  const lines = [];
  matrix.forEach((row, i) => row.forEach((weight, j) => {
    const line = svgEl("line", { x1: width, y1: y(i), x2: width + gap, y2: y(j), "stroke-width": 2,
                                 "stroke-opacity": weight.toFixed(4), "data-query": i });
    lines.push(line);
    svg.append(line);
  }));
  const left = tokens.map((token, i) => svgEl("text", { x: width - 8, y: y(i) + 4, "text-anchor": "end" }, token));
  const right = tokens.map((token, j) => svgEl("text", { x: width + gap + 8, y: y(j) + 4 }, token));
  left.forEach((label, i) => {
    label.addEventListener("mouseenter", () => {
      svg.classList.add("hover");
      label.classList.add("hl");
      lines.forEach((line) => line.classList.toggle("hl", line.dataset.query === String(i)));
      right.forEach((other, j) => other.setAttribute("fill-opacity", String(0.25 + 0.75 * matrix[i][j])));
    });
    label.addEventListener("mouseleave", () => {
      svg.classList.remove("hover");
      label.classList.remove("hl");
      lines.forEach((line) => line.classList.remove("hl"));
      right.forEach((other) => other.removeAttribute("fill-opacity"));
    });
  });
  svg.append(...left, ...right);
}

function drawMatrix(svg, tokens, matrix) {
  const cell = Math.max(10, Math.min(28, Math.floor(560 / tokens.length))), margin = 110;
  const size = margin + tokens.length * cell;
  svg.setAttribute("width", String(size + 10));
  svg.setAttribute("height", String(size + 10));
  const rows = tokens.map((token, i) => svgEl("text", { x: margin - 6, y: margin + i * cell + cell * 0.7,
                                                         "text-anchor": "end" }, token));
  tokens.forEach((token, j) => {
    const x = margin + j * cell + cell * 0.7;
    svg.append(svgEl("text", { x, y: margin - 6, transform: `rotate(-60 ${x} ${margin - 6})` }, token));
  });
  const cells = matrix.map((row, i) => row.map((weight, j) => {
    const rect = svgEl("rect", { class: "cell", x: margin + j * cell, y: margin + i * cell, width: cell - 1,
                                 height: cell - 1, fill: "#2463d1", "fill-opacity": weight.toFixed(4) });
    rect.append(svgEl("title", {}, `${tokens[i]} → ${tokens[j]}: ${weight.toFixed(4)}`));
    svg.append(rect);
    return rect;
  }));
  rows.forEach((label, i) => {
    const toggle = (on) => {
      label.classList.toggle("hl", on);
      cells[i].forEach((rect) => rect.classList.toggle("hl", on));
    };
    label.addEventListener("mouseenter", () => toggle(true));
    label.addEventListener("mouseleave", () => toggle(false));
    cells[i].forEach((rect) => {
      rect.addEventListener("mouseenter", () => toggle(true));
      rect.addEventListener("mouseleave", () => toggle(false));
    });
  });
  svg.append(...rows);
}

async function main() {
  const params = new URLSearchParams(window.location.search);
  fillNumbers($("layer"), 1, params.get("layer") || 0);
  fillNumbers($("head"), 1, params.get("head") || 0);
  for (const name of ["aggregate", "view"]) if (params.get(name)) $(name).value = params.get(name);
  if (params.get("text")) $("text").value = params.get("text");
  $("form").addEventListener("submit", (event) => {
    event.preventDefault();
    show().catch((error) => setStatus(String(error), true));
  });
  for (const name of ["layer", "head", "aggregate", "model"]) {
    $(name).addEventListener("change", () => show().catch((error) => setStatus(String(error), true)));
  }
  $("view").addEventListener("change", draw);
  await loadModels(params.get("model"));
  if (params.get("text")) await show();
}

main().catch((error) => setStatus(String(error), true));
