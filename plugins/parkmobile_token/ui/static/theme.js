/*
 * Follow Airflow's colour mode. Airflow 3's UI keeps the user's choice in localStorage ("theme":
 * light, dark or system) and marks its <html> with the class "light" or "dark"; this page opens in an
 * iframe on the same origin, so it reads both. Older UIs kept "chakra-ui-color-mode". Without any of
 * them, the system's prefers-color-scheme decides. Sets <html data-theme="light|dark">.
 */
(function () {
  "use strict";
  var media = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
  var parentRoot = null;
  try {
    if (window.parent !== window) {
      parentRoot = window.parent.document.documentElement;
    }
  } catch (err) {
    parentRoot = null; // another origin: its document is out of reach
  }

  function stored(key) {
    try {
      var value = window.localStorage.getItem(key);
      return value === "light" || value === "dark" ? value : null;
    } catch (err) {
      return null;
    }
  }

  function pick() {
    if (parentRoot) {
      if (parentRoot.classList.contains("dark")) return "dark";
      if (parentRoot.classList.contains("light")) return "light";
    }
    var chosen = stored("theme") || stored("chakra-ui-color-mode");
    if (chosen) return chosen;
    return media && media.matches ? "dark" : "light";
  }

  function apply() {
    var theme = pick();
    document.documentElement.setAttribute("data-theme", theme);
    document.documentElement.style.colorScheme = theme;
  }

  apply();
  window.addEventListener("storage", apply);
  if (media && media.addEventListener) media.addEventListener("change", apply);
  if (parentRoot && window.MutationObserver) {
    new MutationObserver(apply).observe(parentRoot, { attributes: true, attributeFilter: ["class"] });
  }
})();
