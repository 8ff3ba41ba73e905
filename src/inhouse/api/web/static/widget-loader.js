// A widget's loader, run in the host page (served by /widget/<id>.js, which wraps it in a
// function of `config`): a chat bubble button that opens the widget's frame in an iframe.
// The token comes from the script tag's data-token and reaches the frame in the URL's
// fragment (never sent to a server, never in a Referer).
"use strict";
const script = document.currentScript;
const home = new URL(script.src).origin;
const token = script.dataset.token || "";
const ids = "inhouse-widget-" + config.id;
let frame = null;

const button = document.createElement("button");
button.type = "button";
button.id = ids + "-button";
button.textContent = config.title;
button.setAttribute("aria-label", "Open chat: " + config.title);
button.setAttribute("aria-expanded", "false");
button.setAttribute("aria-controls", ids + "-frame");
Object.assign(button.style, {
  position: "fixed", right: "16px", bottom: "16px", zIndex: "2147483000",
  padding: "12px 18px", borderRadius: "24px", border: "2px solid " + config.onColour,
  background: config.colour, color: config.onColour, font: "600 16px system-ui, sans-serif",
  cursor: "pointer", boxShadow: "0 2px 10px rgba(0,0,0,.3)",
});

function place() {
  const narrow = window.innerWidth < 480;
  Object.assign(frame.style, {
    position: "fixed", zIndex: "2147483001", border: "1px solid #767676", borderRadius: "12px",
    background: "#fff", boxShadow: "0 4px 24px rgba(0,0,0,.3)",
    right: narrow ? "8px" : "16px", bottom: narrow ? "8px" : "72px",
    width: narrow ? "calc(100vw - 16px)" : "380px", height: narrow ? "calc(100vh - 16px)" : "560px",
  });
}

function open() {
  if (!frame) {
    frame = document.createElement("iframe");
    frame.id = ids + "-frame";
    frame.title = config.title;
    frame.referrerPolicy = "origin"; // the server checks which site embeds the frame
    frame.src = home + "/widget/" + encodeURIComponent(config.id) + "/frame#" + encodeURIComponent(token);
    document.body.appendChild(frame);
    window.addEventListener("resize", place);
  }
  place();
  frame.hidden = false;
  frame.style.display = "block";
  button.setAttribute("aria-expanded", "true");
  button.setAttribute("aria-label", "Close chat: " + config.title);
  frame.focus();
  if (frame.contentWindow) frame.contentWindow.postMessage({ type: "inhouse-widget:open" }, home);
}

function close() {
  if (!frame || frame.hidden) return;
  frame.hidden = true;
  frame.style.display = "none";
  button.setAttribute("aria-expanded", "false");
  button.setAttribute("aria-label", "Open chat: " + config.title);
  button.focus();
}

button.addEventListener("click", () => (frame && !frame.hidden ? close() : open()));
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") close();
});
window.addEventListener("message", (event) => {
  if (!frame || event.origin !== home || event.source !== frame.contentWindow) return;
  if (event.data && event.data.type === "inhouse-widget:close") close();
});

function mount() { document.body.appendChild(button); }
if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
