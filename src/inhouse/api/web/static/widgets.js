// /manage/widgets: create a widget (its snippet shown once, with a copy button), list, delete.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("widget-create");
  const error = document.getElementById("widget-error");
  const models = document.getElementById("w-model");
  const collectionSet = document.getElementById("w-collections-set");
  const collections = document.getElementById("w-collections");
  const created = document.getElementById("widget-created");
  const snippet = document.getElementById("widget-snippet");
  const copied = document.getElementById("widget-copied");
  const rows = document.getElementById("widget-rows");
  const listStatus = document.getElementById("widget-list-status");

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  async function loadChoices() {
    const listed = await inhouse.api("/v1/models");
    for (const model of listed.data) {
      const option = document.createElement("option");
      option.value = option.textContent = model.id;
      models.appendChild(option);
    }
    try {
      const found = await inhouse.api("/v1/knowledge/collections");
      for (const c of found.data || []) {
        const label = document.createElement("label");
        const box = document.createElement("input");
        box.type = "checkbox";
        box.value = c.name;
        label.append(box, c.name);
        collections.appendChild(label);
      }
      collectionSet.hidden = !collections.children.length;
    } catch (_) { /* no knowledge here: widgets without collections */ }
  }

  async function loadWidgets() {
    const listed = await inhouse.api("/admin/widgets");
    rows.replaceChildren();
    inhouse.announce(listStatus, listed.widgets.length ? "" : "No widgets yet.");
    for (const w of listed.widgets) {
      const row = document.createElement("tr");
      cell(row, w.name + (w.disabled ? " (disabled)" : ""));
      cell(row, w.model + (w.collections.length ? " + " + w.collections.join(", ") : ""));
      cell(row, w.origins.join(" "));
      cell(row, `${w.requests_per_minute}/min` + (w.tokens_per_day ? `, ${w.tokens_per_day} tokens/day` : ""));
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "danger";
      remove.textContent = "Delete";
      remove.setAttribute("aria-label", "Delete widget " + w.name);
      remove.addEventListener("click", () => removeWidget(w));
      cell(row, "").appendChild(remove);
      rows.appendChild(row);
    }
  }

  async function removeWidget(w) {
    if (!window.confirm(`Delete the widget "${w.name}"? Sites using it stop working at once.`)) return;
    try {
      await inhouse.api("/admin/widgets/" + encodeURIComponent(w.id), { method: "DELETE" });
      inhouse.announce(listStatus, `Deleted ${w.name}.`);
      await loadWidgets();
    } catch (failure) {
      inhouse.announce(listStatus, failure.message, true);
    }
  }

  function request() {
    const data = new FormData(form);
    const number = (name) => (data.get(name) === "" ? null : Number(data.get(name)));
    const text = (name) => String(data.get(name) || "").trim() || null;
    return {
      name: String(data.get("name") || "").trim(),
      model: data.get("model"),
      origins: String(data.get("origins") || "").split(/\s+/).filter(Boolean),
      collections: [...collections.querySelectorAll("input:checked")].map((box) => box.value),
      requests_per_minute: number("requests_per_minute"),
      tokens_per_day: number("tokens_per_day"),
      branding: { title: text("title"), welcome_text: text("welcome_text"), primary_colour: data.get("primary_colour") },
    };
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    inhouse.announce(error, "");
    try {
      const widget = await inhouse.api("/admin/widgets", { method: "POST", json: request() });
      snippet.value = widget.snippet;
      created.hidden = false;
      inhouse.announce(copied, "");
      document.getElementById("created-heading").focus();
      form.reset();
      await loadWidgets();
    } catch (failure) {
      inhouse.announce(error, failure.message, true);
    }
  });

  document.getElementById("widget-copy").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(snippet.value);
    } catch (_) {
      snippet.select();
      document.execCommand("copy");
    }
    inhouse.announce(copied, "Copied.");
  });

  loadChoices().catch((failure) => inhouse.announce(error, failure.message, true));
  loadWidgets().catch((failure) => inhouse.announce(listStatus, failure.message, true));
});
