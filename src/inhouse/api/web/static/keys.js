// API keys: the table rows both directory pages show, and the "My keys" page (list, create
// with the secret shown once, revoke). Every change is a call to /admin/keys.
"use strict";

const inhouseKeys = (() => {
  const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

  function when(seconds) {
    return seconds === null ? "never" : dateFormat.format(new Date(seconds * 1000));
  }

  // A key's model or collection scope: null means no limit.
  function scope(list, unlimited) {
    if (list === null) return unlimited;
    return list.length ? list.join(", ") : "none";
  }

  function status(key) {
    if (key.revoked_at !== null) return `Revoked ${when(key.revoked_at)}`;
    if (key.expires_at !== null && key.expires_at * 1000 <= Date.now()) return "Expired";
    return "Active";
  }

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.append(td);
    return td;
  }

  function emptyRow(tbody, columns, text) {
    const row = document.createElement("tr");
    cell(row, text).colSpan = columns;
    row.firstChild.className = "muted";
    tbody.replaceChildren(row);
  }

  function label(key) {
    return key.name ? `${key.name} (${key.id})` : key.id;
  }

  // One row per key; `showUser` adds the owner first; `onRevoke(key)`, when given, puts a
  // Revoke button on every key not yet revoked (and an empty cell on the others).
  function renderRows(tbody, keys, { showUser = false, onRevoke = null } = {}) {
    const columns = (showUser ? 9 : 8) + (onRevoke ? 1 : 0);
    if (!keys.length) {
      emptyRow(tbody, columns, "No keys yet.");
      return;
    }
    tbody.replaceChildren(...keys.map((key) => {
      const row = document.createElement("tr");
      row.dataset.key = key.id;
      if (showUser) cell(row, key.user);
      cell(row, key.name || "(unnamed)");
      cell(row, key.id).className = "mono";
      cell(row, scope(key.models, "all"));
      cell(row, scope(key.collections, "all readable"));
      cell(row, when(key.created_at));
      cell(row, when(key.last_used_at));
      cell(row, when(key.expires_at));
      cell(row, status(key));
      if (onRevoke) {
        const actions = cell(row, "");
        if (key.revoked_at === null) {
          const button = document.createElement("button");
          button.type = "button";
          button.className = "danger";
          button.textContent = "Revoke";
          button.setAttribute("aria-label", `Revoke key ${key.name || key.id}`);
          button.addEventListener("click", () => onRevoke(key));
          actions.append(button);
        }
      }
      return row;
    }));
  }

  // Ask first; then DELETE /admin/keys/ID. Resolves true when the key was revoked.
  async function revoke(key) {
    const sure = window.confirm(`Revoke the key ${label(key)}? Programs that use it stop working at once.`);
    if (!sure) return false;
    await inhouse.api(`/admin/keys/${encodeURIComponent(key.id)}`, { method: "DELETE" });
    return true;
  }

  return { cell, emptyRow, label, renderRows, revoke };
})();

// ----- the "My keys" page -------------------------------------------------------------------

function setupMyKeys(root) {
  const owner = root.dataset.owner;
  const tbody = document.querySelector("#keys-table tbody");
  const status = document.getElementById("keys-status");
  const error = document.getElementById("keys-error");
  const form = document.getElementById("create-key");
  const dialog = document.getElementById("new-key-dialog");
  const secret = document.getElementById("new-key-secret");
  const copyStatus = document.getElementById("copy-status");

  async function load() {
    const body = await inhouse.api(`/admin/keys?user=${encodeURIComponent(owner)}`);
    inhouseKeys.renderRows(tbody, body.keys, { onRevoke: revoke });
  }

  async function revoke(key) {
    inhouse.announce(error, "");
    try {
      if (!(await inhouseKeys.revoke(key))) return;
      await load();
      inhouse.announce(status, `Key ${inhouseKeys.label(key)} revoked.`);
    } catch (failure) {
      inhouse.announce(error, failure.message, true);
    }
  }

  // Tick boxes for the models or collections a key may be limited to.
  async function choices(fieldset, path, name) {
    const note = fieldset.querySelector("[data-empty]");
    try {
      const names = (await inhouse.api(path)).data.map((item) => item.id || item.name);
      names.forEach((value) => {
        const labelled = document.createElement("label");
        labelled.className = "check";
        const box = document.createElement("input");
        box.type = "checkbox";
        box.name = name;
        box.value = value;
        labelled.append(box, document.createTextNode(value));
        fieldset.append(labelled);
      });
      note.textContent = names.length ? "" : "None available.";
      note.hidden = names.length > 0;
    } catch (failure) {
      note.textContent = `Could not list them: ${failure.message}`;
    }
  }

  function request() {
    const data = new FormData(form);
    const json = { name: String(data.get("name") || "").trim() };
    const models = data.getAll("models").map(String);
    const collections = data.getAll("collections").map(String);
    if (models.length) json.models = models;
    if (collections.length) json.collections = collections;
    const days = data.get("expires_in_days");
    if (days) json.expires_in_days = Number(days);
    ["tokens_per_day", "tokens_per_month", "requests_per_minute"].forEach((field) => {
      const text = String(data.get(field) || "").trim();
      if (text) json[field] = Number(text);
    });
    return json;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    inhouse.announce(error, "");
    try {
      const created = await inhouse.api("/admin/keys", { method: "POST", json: request() });
      form.reset();
      dialog.querySelector("[data-field=name]").textContent = inhouseKeys.label(created);
      secret.value = created.key;
      inhouse.announce(copyStatus, "");
      dialog.showModal();
      secret.select();
      await load();
      inhouse.announce(status, `Key ${inhouseKeys.label(created)} created.`);
    } catch (failure) {
      inhouse.announce(error, failure.message, true);
    }
  });

  document.getElementById("copy-key").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(secret.value);
    } catch (_) {
      secret.select(); // no clipboard access (an insecure origin): copy from the selection
      document.execCommand("copy");
    }
    inhouse.announce(copyStatus, "Copied to the clipboard.");
  });
  document.getElementById("close-key-dialog").addEventListener("click", () => dialog.close());
  // However the dialog closes (Done, Escape), the secret leaves the page.
  dialog.addEventListener("close", () => {
    secret.value = "";
    document.getElementById("key-name").focus();
  });

  choices(document.getElementById("key-models"), "/v1/models", "models");
  choices(document.getElementById("key-collections"), "/v1/knowledge/collections", "collections");
  load().catch((failure) => inhouse.announce(error, failure.message, true));
}

document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("my-keys");
  if (root) setupMyKeys(root);
});
