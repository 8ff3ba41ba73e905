// The chat page: the composer, streamed answers and their actions (the sidebar is in
// chat-list.js). Text from users, documents and models goes in with textContent; the one
// exception is an answer's `html`, which the server rendered from Markdown and sanitized.
"use strict";

(() => {
  const { UNTITLED, element, conversationPath } = chatParts;
  const SVG = "http://www.w3.org/2000/svg";
  const state = {
    conversation: null, // the open conversation (without its messages), or null for a new chat
    messages: [],
    controller: null, // the AbortController of the answer being streamed
    ratings: new Map(), // completion id -> 1 | -1, given on this page
  };
  let ui = {};
  let sidebar = null;

  function say(text, isError = false) {
    inhouse.announce(ui.status, text, isError);
  }

  // ---- one conversation --------------------------------------------------------------

  async function openConversation(id) {
    let conversation;
    try {
      conversation = await inhouse.api(conversationPath(id));
    } catch (failure) {
      ui.welcome.hidden = true;
      say(failure.status === 404 ? "This conversation does not exist." : failure.message, true);
      ui.send.disabled = true;
      return;
    }
    state.messages = conversation.messages || [];
    delete conversation.messages;
    state.conversation = conversation;
    showTitle(conversation.title);
    choose(conversation.model, conversation.collections || []);
    renderMessages();
  }

  function showTitle(title) {
    ui.title.textContent = title || (state.conversation ? UNTITLED : "New chat");
  }

  function choose(model, collections) {
    if (model && ![...ui.model.options].some((o) => o.value === model)) {
      ui.model.append(element("option", { value: model, text: model }));
    }
    if (model) ui.model.value = model;
    for (const box of collectionBoxes()) box.checked = collections.includes(box.value);
  }

  function collectionBoxes() {
    return [...document.querySelectorAll("#collection-choice input[type=checkbox]")];
  }

  function chosenCollections() {
    return collectionBoxes().filter((box) => box.checked).map((box) => box.value);
  }

  async function saveSettings(change) {
    if (!state.conversation) return;
    try {
      Object.assign(state.conversation, await inhouse.api(conversationPath(state.conversation.id), { method: "PATCH", json: change }));
    } catch (failure) {
      say(`Could not change the conversation: ${failure.message}`, true);
    }
  }

  // ---- messages ----------------------------------------------------------------------

  function renderMessages() {
    const last = lastAssistantIndex();
    ui.messages.replaceChildren(...state.messages.map((m, i) => messageItem(m, i === last)));
    ui.welcome.hidden = state.messages.length > 0;
  }

  function lastAssistantIndex() {
    const last = state.messages.length - 1;
    return last >= 0 && state.messages[last].role === "assistant" ? last : -1;
  }

  function messageItem(message, isLast) {
    const assistant = message.role === "assistant";
    const body = element("div", { className: assistant ? "message-body markdown" : "message-body plain" });
    if (assistant && message.html) body.innerHTML = message.html; // sanitized by the server
    else body.textContent = message.content;
    const item = element("li", { className: `message ${assistant ? "assistant" : "user"}` },
      element("p", { className: "message-role", text: assistant ? "Assistant" : "You" }), body);
    if (message.stopped) item.append(element("p", { className: "muted note", text: "Stopped before the end." }));
    if (assistant) {
      if (message.citations && message.citations.length) item.append(citationList(message.citations));
      if (message.completion_id) item.append(...answerActions(message, isLast));
    }
    return item;
  }

  function citationList(citations) {
    const items = citations.map((c, i) => {
      const name = c.title || (c.source || "").split(/[\\/]/).pop() || `document ${c.document}`;
      const where = [c.collection, ...place(c.location || {})].join(", ");
      const summary = element("summary", { text: `[${c.index || i + 1}] ${name}` + (where ? ` (${where})` : "") });
      return element("li", {}, element("details", {}, summary, element("blockquote", { text: c.snippet || "" })));
    });
    return element("div", { className: "citations" },
      element("p", { className: "citations-title", text: "Sources" }), element("ol", {}, ...items));
  }

  // Where in its document a passage is: its headings, page(s), row(s).
  function place(location) {
    const parts = [];
    if (Array.isArray(location.headings) && location.headings.length) parts.push(location.headings.join(" › "));
    for (const [key, one, many] of [["page", "page", "pages"], ["row", "row", "rows"]]) {
      if (location[key] === undefined) continue;
      const last = location[`last_${key}`];
      parts.push(last === undefined ? `${one} ${location[key]}` : `${many} ${location[key]}–${last}`);
    }
    return parts;
  }

  function answerActions(message, isLast) {
    const bar = element("div", { className: "answer-actions", role: "group", "aria-label": "Answer actions" });
    const note = element("p", { className: "muted action-status", role: "status" });
    if (isLast) bar.append(button("Regenerate", "Regenerate this answer", regenerate));
    bar.append(button("Copy", "Copy this answer", () => copy(message, note)));
    const up = button(thumb(true), "Good answer", () => rate(message, 1, [up, down], note));
    const down = button(thumb(false), "Bad answer", () => rate(message, -1, [up, down], note));
    showRating(message.completion_id, [up, down]);
    const suggest = button("Suggest a better answer", "Suggest a better answer", () => toggleSuggestion(form, suggest));
    suggest.setAttribute("aria-expanded", "false");
    bar.append(up, down, suggest);
    const form = suggestionForm(message, [up, down], note, suggest);
    return [bar, form, note];
  }

  // A button showing `content` (text or an icon), named `label` for assistive technology.
  function button(content, label, onClick) {
    const node = element("button", { type: "button", className: "secondary small" }, content);
    if (label !== content) {
      node.setAttribute("aria-label", label);
      node.setAttribute("title", label);
    }
    node.addEventListener("click", onClick);
    return node;
  }

  // A thumb icon (up, or turned upside down), drawn here: no icon font, no image request.
  function thumb(up) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("class", "icon");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    const hand = document.createElementNS(SVG, "path");
    hand.setAttribute("d", "M2 10h4v11H2zM8 21h9.5a2 2 0 0 0 2-1.6l1.4-7A2 2 0 0 0 19 10h-5l.8-4.2A2 2 0 0 0 12.9 3.5L8 10z");
    if (!up) hand.setAttribute("transform", "rotate(180 12 12)");
    svg.append(hand);
    return svg;
  }

  function showRating(completionId, [up, down]) {
    const rating = state.ratings.get(completionId);
    up.setAttribute("aria-pressed", String(rating === 1));
    down.setAttribute("aria-pressed", String(rating === -1));
  }

  async function sendFeedback(message, rating, correction) {
    const json = { completion_id: message.completion_id, rating };
    if (correction) json.correction = correction;
    await inhouse.api("/v1/feedback", { method: "POST", json });
    state.ratings.set(message.completion_id, rating);
  }

  async function rate(message, rating, thumbs, note) {
    try {
      await sendFeedback(message, rating);
      showRating(message.completion_id, thumbs);
      inhouse.announce(note, "Thank you for the feedback.");
    } catch (failure) {
      inhouse.announce(note, `Could not send the feedback: ${failure.message}`, true);
    }
  }

  function suggestionForm(message, thumbs, note, opener) {
    const id = `better-${message.completion_id}`;
    const text = element("textarea", { id, rows: "4", maxlength: "20000", required: "" });
    const form = element("form", { className: "suggestion", hidden: "" },
      element("label", { for: id, text: "A better answer" }), text,
      element("button", { type: "submit", className: "small", text: "Send the better answer" }));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const correction = text.value.trim();
      if (!correction) return;
      try {
        // a suggestion keeps the rating already given; without one it says the answer was not good
        await sendFeedback(message, state.ratings.get(message.completion_id) || -1, correction);
        showRating(message.completion_id, thumbs);
        toggleSuggestion(form, opener);
        inhouse.announce(note, "Thank you: your answer was saved.");
      } catch (failure) {
        inhouse.announce(note, `Could not send the answer: ${failure.message}`, true);
      }
    });
    return form;
  }

  function toggleSuggestion(form, opener) {
    form.hidden = !form.hidden;
    opener.setAttribute("aria-expanded", String(!form.hidden));
    (form.hidden ? opener : form.querySelector("textarea")).focus();
  }

  async function copy(message, note) {
    try {
      await navigator.clipboard.writeText(message.content);
      inhouse.announce(note, "Copied.");
    } catch (_) {
      inhouse.announce(note, "Copying is not allowed here.", true);
    }
  }

  // ---- sending and streaming ---------------------------------------------------------

  async function ensureConversation() {
    if (state.conversation) return state.conversation;
    const conversation = await inhouse.api("/v1/conversations", {
      method: "POST", json: { model: ui.model.value, collections: chosenCollections() },
    });
    delete conversation.messages;
    state.conversation = conversation;
    window.history.pushState(null, "", `/c/${encodeURIComponent(conversation.id)}`);
    ui.root.dataset.conversation = conversation.id;
    showTitle(conversation.title);
    return conversation;
  }

  async function send(content) {
    let conversation;
    try {
      conversation = await ensureConversation();
    } catch (failure) {
      say(`Could not start the conversation: ${failure.message}`, true);
      return false;
    }
    state.messages.push({ role: "user", content });
    if (await answer(conversationPath(conversation.id, "/messages"), { content })) return true;
    state.messages.pop(); // refused before it started: the server did not keep the message
    renderMessages();
    return false;
  }

  async function regenerate() {
    if (state.controller || lastAssistantIndex() < 0) return;
    const previous = state.messages.pop();
    if (!(await answer(conversationPath(state.conversation.id, "/regenerate"), {}))) {
      state.messages.push(previous); // refused before it started: the old answer stays
      renderMessages();
    }
  }

  // Streams an answer into a new list item; the finished (or stopped) message joins
  // state.messages. False when the server refused the request before the answer started.
  async function answer(path, json) {
    const live = showLiveAnswer();
    const controller = new AbortController();
    setBusy(controller);
    say("Answering…");
    const partial = { role: "assistant", content: "", completion_id: null, citations: [] };
    let message = null;
    let outcome;
    try {
      message = await receive(path, json, controller.signal, partial, live);
      outcome = message ? ["Answer complete.", false] : ["The answer ended early.", true];
    } catch (failure) {
      if (controller.signal.aborted) outcome = ["Stopped.", false];
      else outcome = [`The answer failed: ${failure.message}`, true];
    } finally {
      setBusy(null);
    }
    const started = Boolean(partial.completion_id || partial.content) || controller.signal.aborted;
    if (!message && (partial.completion_id || partial.content)) {
      message = { ...partial, html: null, stopped: controller.signal.aborted };
    }
    if (message) state.messages.push(message);
    renderMessages();
    say(...outcome); // after the answer is in place: the status tells that it is done
    sidebar.load();
    return started;
  }

  function showLiveAnswer() {
    renderMessages();
    const live = element("div", { className: "message-body markdown" });
    const item = element("li", { className: "message assistant", "aria-busy": "true" },
      element("p", { className: "message-role", text: "Assistant" }), live);
    ui.messages.append(item);
    ui.welcome.hidden = true;
    item.scrollIntoView({ block: "nearest" });
    return live;
  }

  // The events of one answer: text shown as it comes (as text only), the parts kept in
  // `partial`; the stored message, with the server's sanitized HTML, once it ends.
  async function receive(path, json, signal, partial, live) {
    const response = await inhouse.api(path, { method: "POST", json, signal });
    let message = null;
    for await (const event of inhouse.events(response)) {
      if (event.type === "start") {
        partial.completion_id = event.completion_id;
        partial.citations = event.citations || [];
      } else if (event.type === "delta") {
        partial.content += event.text;
        live.textContent = partial.content;
      } else if (event.type === "end") {
        message = { ...partial, ...(event.message || {}), html: event.html };
      } else if (event.type === "error") {
        throw new inhouse.ApiError(0, event);
      }
    }
    return message;
  }

  function setBusy(controller) {
    state.controller = controller;
    ui.send.disabled = Boolean(controller);
    ui.stop.hidden = !controller;
    ui.model.disabled = Boolean(controller) || ui.model.options.length === 0;
    if (!controller && document.activeElement === document.body) ui.input.focus();
  }

  function stop() {
    if (state.controller) state.controller.abort();
    ui.input.focus();
  }

  async function submitComposer(event) {
    event.preventDefault();
    const content = ui.input.value.trim();
    if (!content || state.controller || ui.send.disabled) return;
    ui.input.value = "";
    if (!(await send(content))) ui.input.value = content;
  }

  // ---- wiring ------------------------------------------------------------------------

  function setupComposer() {
    ui.composer.addEventListener("submit", submitComposer);
    ui.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        ui.composer.requestSubmit();
      }
    });
    ui.stop.addEventListener("click", stop);
    ui.model.addEventListener("change", () => saveSettings({ model: ui.model.value }));
    for (const box of collectionBoxes()) {
      box.addEventListener("change", () => saveSettings({ collections: chosenCollections() }));
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const byId = (id) => document.getElementById(id);
    ui = {
      root: byId("chat"), title: byId("chat-title"), model: byId("model-picker"),
      welcome: byId("welcome"), messages: byId("messages"), status: byId("chat-status"),
      composer: byId("composer"), input: byId("composer-input"), send: byId("send"), stop: byId("stop"),
    };
    sidebar = chatParts.sidebar({
      current: () => state.conversation,
      onTitle: (changed) => { state.conversation.title = changed.title; showTitle(changed.title); },
      say,
    });
    setupComposer();
    // a new chat's address was pushed when it was created: Back shows what the address says
    window.addEventListener("popstate", () => window.location.reload());
    const id = ui.root.dataset.conversation;
    if (id) openConversation(id).then(() => sidebar.load());
    else sidebar.load();
  });
})();
