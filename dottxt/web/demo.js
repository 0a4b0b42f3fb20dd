// The page script of `dottxt demo --web`: one streamFields() call per message, each field onto its card.
import { streamFields } from "/dottxt-stream.js";

const FIELDS = ["intent", "urgency", "reply"];
const $ = (selector) => document.querySelector(selector);
const form = $("#compose");
const textarea = $("#message");
const status = $("[data-status]");
const ops = $("[data-ops]");
let live = null;

function setStatus(state) {
  status.textContent = state;
  status.dataset.status = state;
}

function reset() {
  for (const field of FIELDS) {
    const card = $(`[data-card="${field}"]`);
    card.classList.remove("filled");
    delete card.dataset.value;
    $(`[data-field="${field}"]`).textContent = "";
    $(`[data-time-for="${field}"]`).textContent = "";
  }
  $("[data-result-panel]").hidden = true;
  $("[data-error-panel]").hidden = true;
  ops.textContent = "0 ops";
}

function start(message) {
  if (live) live.close();
  reset();
  setStatus("streaming");
  const started = performance.now();
  const arrived = {};
  let count = 0;
  const onField = {};
  for (const name of FIELDS) {
    onField[name] = (value, field) => {
      const ms = Math.round(performance.now() - started);
      arrived[field] = ms;
      const card = $(`[data-card="${field}"]`);
      $(`[data-field="${field}"]`).textContent = String(value);
      $(`[data-time-for="${field}"]`).textContent = `${ms} ms`;
      card.dataset.value = String(value);
      card.classList.add("filled");
    };
  }
  live = streamFields(`/triage?message=${encodeURIComponent(message)}`, {
    onOp: () => {
      count += 1;
      ops.textContent = `${count} op${count === 1 ? "" : "s"}`;
    },
    onField,
    onDone: (result) => {
      $("[data-result]").textContent = JSON.stringify(result, null, 2);
      const lead = arrived.reply - arrived.intent;
      $("[data-summary]").textContent = Number.isFinite(lead)
        ? `Routing was decided ${lead} ms before the reply landed (intent at ${arrived.intent} ms, reply at ${arrived.reply} ms).`
        : "";
      $("[data-result-panel]").hidden = false;
      setStatus("done");
    },
    onError: ({ message: text, type }) => {
      $("[data-error]").textContent = `${type}: ${text}`;
      $("[data-error-panel]").hidden = false;
      setStatus("error");
    },
  });
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  start(textarea.value);
});
textarea.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.metaKey || event.ctrlKey)) form.requestSubmit();
});
for (const chip of document.querySelectorAll("[data-example]")) {
  chip.addEventListener("click", () => {
    textarea.value = chip.dataset.example;
    form.requestSubmit();
  });
}
window.addEventListener("pagehide", () => live && live.close());
