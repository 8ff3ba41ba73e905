// The chat inside a widget's iframe: streams answers from /widget/<id>/chat with the widget's
// token (from the frame URL's fragment, which no server or Referer sees) and the frame ticket.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("widget");
  const log = document.getElementById("widget-log");
  const form = document.getElementById("widget-form");
  const input = document.getElementById("widget-input");
  const send = document.getElementById("widget-send");
  const status = document.getElementById("widget-status");
  const token = decodeURIComponent(window.location.hash.slice(1));
  const { widget, ticket, parent } = root.dataset;
  const turns = [];

  function tellParent(type) {
    if (window.parent !== window) window.parent.postMessage({ type: "inhouse-widget:" + type }, parent);
  }

  function bubble(role, text) {
    const p = document.createElement("p");
    p.className = "widget-message " + role;
    p.textContent = text;
    log.appendChild(p);
    log.scrollTop = log.scrollHeight;
    return p;
  }

  function sources(citations) {
    if (!citations.length) return;
    const list = document.createElement("ol");
    list.className = "widget-sources";
    list.setAttribute("aria-label", "Sources");
    for (const c of citations) {
      const item = document.createElement("li");
      item.textContent = c.title || c.collection;
      list.appendChild(item);
    }
    log.appendChild(list);
  }

  async function failure(response) {
    let body = null;
    try { body = await response.json(); } catch (_) { /* not JSON */ }
    const error = (body && body.error) || {};
    if (error.code === "ticket_expired") window.location.reload();
    return error.message || `The chat is unavailable (HTTP ${response.status}).`;
  }

  async function ask(question) {
    turns.push({ role: "user", content: question });
    bubble("user", question);
    const answer = bubble("assistant", "");
    answer.setAttribute("aria-busy", "true");
    const response = await fetch(`/widget/${encodeURIComponent(widget)}/chat`, {
      method: "POST",
      credentials: "omit",
      headers: { "Content-Type": "application/json", Authorization: "Bearer " + token, "X-Widget-Ticket": ticket },
      body: JSON.stringify({ messages: turns }),
    });
    if (!response.ok) {
      turns.pop();
      answer.remove();
      throw new Error(await failure(response));
    }
    for await (const event of inhouse.events(response)) {
      if (event.delta) answer.textContent += event.delta;
      if (event.citations) sources(event.citations);
      if (event.error) throw new Error(event.error.message);
      log.scrollTop = log.scrollHeight;
    }
    answer.removeAttribute("aria-busy");
    turns.push({ role: "assistant", content: answer.textContent });
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const question = input.value.trim();
    if (!question) return;
    input.value = "";
    send.disabled = true;
    inhouse.announce(status, "");
    try {
      await ask(question);
    } catch (problem) {
      inhouse.announce(status, problem.message, true);
    } finally {
      send.disabled = false;
      input.focus();
    }
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") tellParent("close");
  });
  document.getElementById("widget-close").addEventListener("click", () => tellParent("close"));
  window.addEventListener("message", (event) => {
    if (event.origin === parent && event.data && event.data.type === "inhouse-widget:open") input.focus();
  });
  input.focus();
});
