// The knowledge page: collections, documents, connector status, uploads with progress, search.
// Everything comes from /v1/knowledge as the signed-in user; text is inserted as text only.
"use strict";

(() => {
  const BASE = "/v1/knowledge";
  const byId = (id) => document.getElementById(id);
  let current = null; // the name of the open collection

  function when(seconds) {
    return seconds ? new Date(seconds * 1000).toLocaleString() : "never";
  }

  function collectionPath(name, rest = "") {
    return `${BASE}/collections/${encodeURIComponent(name)}${rest}`;
  }

  function cells(row, values) {
    for (const value of values) {
      const cell = document.createElement("td");
      cell.textContent = value === null || value === undefined ? "" : String(value);
      row.append(cell);
    }
  }

  // Each cell carries its column's name, shown beside it when narrow screens stack the rows.
  function labelCells(table) {
    const names = [...table.querySelectorAll("thead th")].map((th) => th.textContent);
    for (const row of table.tBodies[0].rows) {
      [...row.cells].forEach((cell, i) => { cell.dataset.label = names[i]; });
    }
  }

  function plural(count, one, many) {
    return `${count} ${count === 1 ? one : many}`;
  }

  function say(element, text, isError = false) {
    inhouse.announce(element, text, isError);
  }

  function failure(error) {
    return error && error.message ? error.message : "The request failed.";
  }

  // ----- collections -----------------------------------------------------------------------

  function lastSync(collection) {
    const sync = collection.sync;
    if (!sync) return "no connector";
    return sync.finished_at ? `${when(sync.finished_at)} (${sync.status})` : sync.status;
  }

  function collectionRow(collection) {
    const row = document.createElement("tr");
    const head = document.createElement("th");
    head.scope = "row";
    const open = document.createElement("button");
    open.type = "button";
    open.className = "link";
    open.textContent = collection.name;
    open.addEventListener("click", () => openCollection(collection.name));
    head.append(open);
    row.append(head);
    const documents = collection.failed ? `${collection.documents} (${collection.failed} failed)`
      : collection.documents;
    cells(row, [(collection.readers || []).join(", "), documents, collection.chunks,
      lastSync(collection)]);
    return row;
  }

  function fillSearchChoices(collections) {
    const select = byId("search-collection");
    const chosen = select.value;
    select.replaceChildren(select.options[0]);
    for (const collection of collections) {
      const option = document.createElement("option");
      option.value = collection.name;
      option.textContent = collection.name;
      select.append(option);
    }
    select.value = collections.some((c) => c.name === chosen) ? chosen : "";
  }

  async function loadCollections() {
    try {
      const listing = await inhouse.api(`${BASE}/collections`);
      const table = byId("collections");
      table.tBodies[0].replaceChildren(...listing.data.map(collectionRow));
      labelCells(table);
      byId("no-collections").hidden = listing.data.length > 0;
      fillSearchChoices(listing.data);
    } catch (error) {
      say(byId("knowledge-status"), failure(error), true);
    }
  }

  // ----- one collection --------------------------------------------------------------------

  function documentRow(doc) {
    const row = document.createElement("tr");
    const source = document.createElement("td");
    source.className = "source";
    source.textContent = doc.source;
    if (doc.title && doc.title !== doc.source) {
      const title = document.createElement("span");
      title.className = "muted document-title";
      title.textContent = doc.title;
      source.append(title);
    }
    row.append(source);
    cells(row, [doc.status, doc.chunks, doc.error || ""]);
    if (doc.status === "failed") row.classList.add("failed");
    return row;
  }

  async function loadDocuments(name) {
    const listing = await inhouse.api(collectionPath(name, "/documents"));
    const table = byId("documents");
    table.tBodies[0].replaceChildren(...listing.data.map(documentRow));
    labelCells(table);
    byId("no-documents").hidden = listing.data.length > 0;
  }

  function fact(list, term, value) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    list.append(dt, dd);
  }

  function showSync(status) {
    const list = byId("connector");
    list.replaceChildren();
    fact(list, "Last change", when(status.last_change_at));
    const sync = status.sync;
    const button = byId("sync-now");
    if (button) button.hidden = !sync;
    if (!sync) {
      fact(list, "Source", "uploads and folders (no connector)");
      return;
    }
    if (sync.url) { // shown to managers only: the API leaves the source out for readers
      const what = sync.query || (sync.tables || []).join(", ");
      fact(list, "Source", what ? `${sync.url}: ${what}` : sync.url);
    }
    fact(list, "Status", sync.status);
    fact(list, "Progress", `${sync.rows_seen} rows seen, ${sync.rows_changed} changed, `
      + `${sync.rows_removed} removed, ${sync.rows_failed} failed`);
    const finished = sync.finished_at ? when(sync.finished_at) : "now";
    fact(list, "Last run", sync.started_at ? `${when(sync.started_at)} to ${finished}` : "never");
    fact(list, "Last error", sync.last_error || "none");
    fact(list, "Next run", sync.next_run_at ? when(sync.next_run_at) : "on demand");
  }

  async function loadSync(name) {
    showSync(await inhouse.api(collectionPath(name, "/sync")));
  }

  async function openCollection(name) {
    current = name;
    const section = byId("collection");
    section.hidden = false;
    const heading = byId("collection-heading");
    heading.textContent = `Collection ${name}`;
    heading.focus();
    try {
      await Promise.all([loadDocuments(name), loadSync(name)]);
    } catch (error) {
      say(byId("knowledge-status"), failure(error), true);
    }
  }

  async function syncNow(button) {
    const status = byId("knowledge-status");
    button.disabled = true;
    say(status, `Syncing ${current}…`);
    try {
      showSync(await inhouse.api(collectionPath(current, "/sync"), { method: "POST" }));
      say(status, `Sync of ${current} finished.`);
      await Promise.all([loadDocuments(current), loadCollections()]);
    } catch (error) {
      say(status, failure(error), true);
    } finally {
      button.disabled = false;
    }
  }

  // ----- uploads ---------------------------------------------------------------------------

  // XMLHttpRequest, not fetch: only it reports how much of a request body has been sent.
  function send(name, file, onProgress) {
    return new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      request.open("POST", collectionPath(name, "/documents"));
      request.setRequestHeader("X-CSRF-Token", inhouse.csrfToken());
      request.responseType = "json";
      request.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) onProgress(event.loaded / event.total);
      });
      request.upload.addEventListener("load", () => onProgress(1));
      request.addEventListener("load", () => {
        if (request.status >= 200 && request.status < 300) resolve(request.response);
        else reject(new inhouse.ApiError(request.status, request.response));
      });
      request.addEventListener("error", () => reject(new Error("the connection broke")));
      const form = new FormData();
      form.append("file", file, file.name);
      request.send(form);
    });
  }

  function outcome(doc) {
    if (doc.status === "failed") return `${doc.source}: failed: ${doc.error}`;
    return `${doc.source}: ${doc.status}, ${plural(doc.chunks, "chunk", "chunks")}`;
  }

  async function uploadOne(name, file, progress, status) {
    progress.value = 0;
    say(status, `Uploading ${file.name}: 0%`);
    const doc = await send(name, file, (share) => {
      progress.value = Math.round(share * 100);
      say(status, share < 1 ? `Uploading ${file.name}: ${progress.value}%`
        : `Indexing ${file.name}…`);
    });
    return outcome(doc);
  }

  async function upload(event) {
    event.preventDefault();
    const form = event.target;
    const input = byId("upload-files");
    const status = byId("upload-status");
    if (!input.files.length) {
      say(status, "Choose one or more files first.", true);
      return;
    }
    const name = current;
    const done = [];
    form.querySelector("button").disabled = true;
    try {
      for (const file of input.files) {
        done.push(await uploadOne(name, file, byId("upload-progress"), status));
      }
      say(status, done.join(". "));
      form.reset();
    } catch (error) {
      if (error.status === 401) window.location.assign("/login?next=/knowledge");
      say(status, [...done, failure(error)].join(". "), true);
    } finally {
      form.querySelector("button").disabled = false;
      await Promise.all([loadDocuments(name), loadCollections()]).catch(() => {});
    }
  }

  // ----- search ----------------------------------------------------------------------------

  // "Leave > Parental leave, page 3–4": the headings, pages and rows a passage comes from.
  function placeOf(location) {
    if (!location) return "";
    const parts = location.headings && location.headings.length
      ? [location.headings.join(" > ")] : [];
    for (const key of ["page", "row"]) {
      if (location[key] === undefined) continue;
      const last = location[`last_${key}`];
      parts.push(`${key} ${location[key]}${last === undefined ? "" : `–${last}`}`);
    }
    return parts.join(", ");
  }

  function hitItem(hit) {
    const item = document.createElement("li");
    item.className = "hit";
    const where = document.createElement("p");
    where.className = "hit-where";
    const origin = [hit.collection, hit.title || hit.source, placeOf(hit.location)]
      .filter(Boolean);
    where.textContent = `${origin.join(" · ")} · score ${hit.score.toFixed(4)}`;
    const snippet = document.createElement("blockquote");
    snippet.className = "hit-snippet";
    snippet.textContent = hit.snippet;
    item.append(where, snippet);
    return item;
  }

  async function search(event) {
    event.preventDefault();
    const form = new FormData(event.target);
    const status = byId("search-status");
    const hits = byId("hits");
    const query = String(form.get("query") || "").trim();
    if (!query) {
      say(status, "Type what to search for.", true);
      return;
    }
    const body = { query, top_k: Number(form.get("top_k")), mode: form.get("mode") };
    if (form.get("collection")) body.collections = [form.get("collection")];
    say(status, "Searching…");
    try {
      const listing = await inhouse.api(`${BASE}/search`, { method: "POST", json: body });
      hits.replaceChildren(...listing.data.map(hitItem));
      say(status, listing.data.length
        ? `${plural(listing.data.length, "passage", "passages")} found.`
        : "No passage found in the collections you may read.");
    } catch (error) {
      hits.replaceChildren();
      say(status, failure(error), true);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    loadCollections();
    byId("search-form").addEventListener("submit", search);
    const uploads = byId("upload-form");
    if (uploads) uploads.addEventListener("submit", upload);
    const sync = byId("sync-now");
    if (sync) sync.addEventListener("click", () => syncNow(sync));
  });
})();
