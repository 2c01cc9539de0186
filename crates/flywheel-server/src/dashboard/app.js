// flywheel dashboard: the only script. Pages work without it, except two parts of the New model
// page that need it: uploading a file (sent as the request body) and the live progress bar. It
// also adds keyboard labelling on the review queue, copying a new key, and model pickers that
// switch at once.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.submit());
  }
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const text = document.getElementById(button.dataset.copy)?.textContent ?? "";
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } catch {
        button.textContent = "Select and copy";
      }
    });
  }
  const queue = document.getElementById("queue");
  if (queue) reviewQueue(queue);
  const upload = document.getElementById("upload");
  if (upload) uploadForm(upload);
  const job = document.getElementById("job");
  if (job && !job.dataset.final) followJob(job);
});

// Sends the chosen file as the body of POST /new/datasets, then reloads to show its preview.
function uploadForm(form) {
  const status = document.getElementById("upload-status");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = form.querySelector("input[type=file]").files[0];
    if (!file) return;
    const query = new URLSearchParams({ filename: file.name });
    const name = form.querySelector("input[name=name]").value.trim();
    if (name) query.set("name", name);
    if (form.querySelector("input[name=labelled]").checked) query.set("labelled", "false");
    status.textContent = `Uploading ${file.name}…`;
    try {
      const response = await fetch(`${form.action}?${query}`, {
        method: "POST",
        body: file,
        headers: { "content-type": "application/octet-stream" },
        credentials: "same-origin",
      });
      const answer = await response.json();
      if (!response.ok) {
        status.textContent = answer.error?.message ?? `${response.status} ${response.statusText}`;
        status.className = "error";
        return;
      }
      status.textContent = `Stored ${answer.name} v${answer.version}: ${answer.rows} rows.`;
      window.location.reload();
    } catch (error) {
      status.textContent = `Not uploaded: ${error.message}`;
      status.className = "error";
    }
  });
}

// Polls the job's state every second and moves the progress bar; reloads when the job ends.
function followJob(job) {
  const bar = document.getElementById("job-progress");
  const detail = document.getElementById("job-detail");
  const tick = async () => {
    try {
      const response = await fetch(job.dataset.status, { credentials: "same-origin" });
      if (response.ok) {
        const j = await response.json();
        const p = j.progress ?? {};
        if (typeof p.fraction === "number") bar.value = p.fraction;
        const parts = [j.state];
        if (p.phase) parts.push(p.phase);
        if (p.epoch) parts.push(`epoch ${p.epoch}/${p.epochs}`);
        if (p.trials) parts.push(`${p.trials} trials`);
        if (typeof p.best_score === "number") parts.push(`best ${p.best_score.toFixed(4)}`);
        if (typeof p.eta_seconds === "number") parts.push(`about ${Math.ceil(p.eta_seconds)} s left`);
        detail.textContent = parts.join(" · ");
        if (["succeeded", "failed", "cancelled"].includes(j.state)) {
          window.location.reload();
          return;
        }
      }
    } catch {
      // The next tick tries again.
    }
    setTimeout(tick, 1000);
  };
  tick();
}

function reviewQueue(queue) {
  const items = () => Array.from(queue.querySelectorAll("li.item"));
  const status = document.getElementById("review-status");
  const waiting = document.getElementById("waiting");
  const done = document.getElementById("done");
  let selected = 0;
  let labelled = 0;

  function select(i) {
    const list = items();
    if (list.length === 0) return;
    selected = Math.max(0, Math.min(i, list.length - 1));
    list.forEach((li, j) => li.setAttribute("aria-selected", j === selected ? "true" : "false"));
    list[selected].focus({ preventScroll: true });
    list[selected].scrollIntoView({ block: "nearest" });
  }

  async function label(li, button) {
    if (li.classList.contains("busy")) return;
    li.classList.add("busy");
    const body = new URLSearchParams(new FormData(button.form));
    body.append(button.name, button.value);
    try {
      const response = await fetch(button.form.action, {
        method: "POST",
        body,
        headers: { "x-requested-with": "fetch" },
        credentials: "same-origin",
      });
      if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
      const answer = await response.json();
      const index = items().indexOf(li);
      li.remove();
      labelled += 1;
      done.textContent = String(labelled);
      waiting.textContent = answer.waiting.toLocaleString("en-US");
      status.textContent = `Labelled as ${button.value}. ${answer.waiting} waiting.`;
      if (items().length === 0) {
        const p = document.createElement("p");
        p.className = "notice";
        p.textContent = "This page is done. Reload for the next texts.";
        queue.after(p);
      } else {
        select(index);
      }
    } catch (error) {
      li.classList.remove("busy");
      status.textContent = `Not saved: ${error.message}`;
      const p = document.createElement("p");
      p.className = "error";
      p.textContent = `Not saved (${error.message}); try again.`;
      li.append(p);
    }
  }

  queue.addEventListener("click", (event) => {
    const button = event.target.closest("button[name=label]");
    if (!button) return;
    event.preventDefault();
    const li = button.closest("li.item");
    selected = items().indexOf(li);
    label(li, button);
  });

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest("input, textarea, select")) return;
    const list = items();
    if (list.length === 0) return;
    if (event.key >= "1" && event.key <= "9") {
      const li = list[selected];
      const button = li?.querySelectorAll("button[name=label]")[Number(event.key) - 1];
      if (button) {
        event.preventDefault();
        label(li, button);
      }
    } else if (event.key === "ArrowDown" || event.key === "ArrowRight" || event.key === "j") {
      event.preventDefault();
      select(selected + 1);
    } else if (event.key === "ArrowUp" || event.key === "ArrowLeft" || event.key === "k") {
      event.preventDefault();
      select(selected - 1);
    }
  });

  select(0);
}
