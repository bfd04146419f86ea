// empi registrar console: keyboard operation and the help overlay. Everything here is a
// shortcut for a link or button already on the page, so the pages work without it.
// Keys are bound declaratively: an element with data-key="x" is clicked (a button, link or
// radio) or focused (a text field) when x is pressed outside a text field.
(function () {
  "use strict";

  var help = document.getElementById("help");
  var opener = null;

  function showHelp(show) {
    if (!help) { return; }
    if (show) {
      opener = document.activeElement;
      help.hidden = false;
      help.querySelector(".dialog").focus();
    } else {
      help.hidden = true;
      if (opener && opener.focus) { opener.focus(); }
    }
  }

  function typing(el) {
    if (!el || !el.tagName) { return false; }
    var t = el.tagName.toLowerCase();
    if (t === "textarea" || t === "select") { return true; }
    if (t !== "input") { return false; }
    var kind = (el.getAttribute("type") || "text").toLowerCase();
    return ["checkbox", "radio", "submit", "button"].indexOf(kind) < 0;
  }

  // The worklist: j/k move between tasks, x selects the one in focus.
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("[data-row]")); }

  function moveRow(step) {
    var all = rows();
    if (all.length === 0) { return false; }
    var at = all.indexOf(document.activeElement);
    var next = at < 0 ? (step > 0 ? 0 : all.length - 1) : Math.min(all.length - 1, Math.max(0, at + step));
    all.forEach(function (a) { a.closest("tr").classList.remove("current"); });
    all[next].closest("tr").classList.add("current");
    all[next].focus();
    return true;
  }

  function toggleRow() {
    var el = document.activeElement;
    if (!el || !el.hasAttribute("data-row")) { return false; }
    var box = el.closest("tr").querySelector("[data-select]");
    if (box) { box.click(); }
    return true;
  }

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) { return; }
    if (e.key === "Escape") {
      if (help && !help.hidden) { showHelp(false); e.preventDefault(); }
      else if (typing(e.target)) { e.target.blur(); }
      return;
    }
    if (typing(e.target)) { return; }
    if (e.key === "?") { showHelp(help && help.hidden); e.preventDefault(); return; }
    if (help && !help.hidden) { return; }
    var page = document.body.getAttribute("data-page");
    if (page === "worklist") {
      if (e.key === "j" && moveRow(1)) { e.preventDefault(); return; }
      if (e.key === "k" && moveRow(-1)) { e.preventDefault(); return; }
      if (e.key === "x" && toggleRow()) { e.preventDefault(); return; }
    }
    var target = document.querySelector('[data-key="' + (e.key === '"' ? '\\"' : e.key.replace(/\\/g, "\\\\")) + '"]');
    if (!target) { return; }
    e.preventDefault();
    if (typing(target)) { target.focus(); } else { target.click(); }
  });

  var close = document.getElementById("help-close");
  if (close) { close.addEventListener("click", function () { showHelp(false); }); }
  if (help) {
    help.addEventListener("click", function (e) { if (e.target === help) { showHelp(false); } });
  }
})();
