// bastion console: sign-in, admin actions, the live error tail and page refresh.
// Served as a file (the console's CSP allows no inline script); no dependencies.
(function () {
  "use strict";
  var body = document.body;
  var api = body.dataset.apiPrefix || "";
  var consolePath = body.dataset.console || "/console";
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.content : "";

  function post(url, data) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(data || {})
    });
  }

  // The console's own errors go where every browser client's do.
  var reported = 0;
  function report(message, stack) {
    if (reported++ >= 10) return;
    post(api + "/client-logs", {
      entries: [{
        level: "error", message: String(message).slice(0, 2000), stack: stack || null,
        area: "console", url: location.pathname, timestamp: new Date().toISOString()
      }]
    }).catch(function () {});
  }
  window.addEventListener("error", function (event) {
    report(event.message, event.error && event.error.stack);
  });
  window.addEventListener("unhandledrejection", function (event) {
    var reason = event.reason || {};
    report(reason.message || reason, reason.stack);
  });

  function problemText(response) {
    return response.json().then(function (problem) {
      var text = problem.detail || problem.title || response.statusText;
      if (problem.errors && problem.errors.length) {
        text += ": " + problem.errors.map(function (e) { return (e.field || "") + " " + (e.message || e.code); }).join("; ");
      }
      return text + (problem.code ? " (" + problem.code + ")" : "");
    }, function () { return response.status + " " + response.statusText; });
  }

  var login = document.getElementById("login-form");
  if (login) {
    login.addEventListener("submit", function (event) {
      event.preventDefault();
      var out = login.querySelector("output");
      var button = login.querySelector("button");
      button.disabled = true;
      out.textContent = "";
      post(api + "/auth/login", {
        email: login.elements.email.value, password: login.elements.password.value
      }).then(function (response) {
        if (response.ok) {
          location.assign(login.dataset.next || consolePath);
          return;
        }
        return problemText(response).then(function (text) { out.textContent = text; button.disabled = false; });
      });
    });
  }

  document.querySelectorAll("[data-logout]").forEach(function (button) {
    button.addEventListener("click", function () {
      post(api + "/auth/logout").finally(function () { location.assign(consolePath + "/login"); });
    });
  });

  // Actions: POST {reason, ...fields} as JSON to the admin API, then show the result.
  document.querySelectorAll("form.action").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var out = form.querySelector("output");
      var button = form.querySelector("button");
      var data = {};
      Array.prototype.forEach.call(form.elements, function (input) {
        if (!input.name) return;
        data[input.name] = input.dataset.kind === "integer" ? parseInt(input.value, 10) : input.value;
      });
      button.disabled = true;
      out.className = "";
      out.textContent = "…";
      post(form.dataset.url, data).then(function (response) {
        if (response.ok) {
          out.textContent = "Done";
          setTimeout(function () { location.reload(); }, 400);
          return;
        }
        return problemText(response).then(function (text) {
          out.className = "failed";
          out.textContent = text;
          button.disabled = false;
        });
      });
    });
  });

  // The live tail: ask for what arrived after the newest row shown, every 2 s.
  var tail = document.getElementById("tail");
  if (tail) {
    var columns = {
      server: function (e) { return [e.at, String(e.status), e.code, e.method + " " + e.path, ids(e)]; },
      client: function (e) { return [e.at, e.level, e.message, (e.area || "") + " " + (e.url || ""), ids(e)]; }
    };
    var poll = function () {
      var url = tail.dataset.src + "?server_after=" + tail.dataset.serverAfter + "&client_after=" + tail.dataset.clientAfter;
      fetch(url, { credentials: "same-origin" }).then(function (response) {
        if (!response.ok) return;
        return response.json().then(function (fresh) {
          ["server", "client"].forEach(function (kind) {
            var rows = fresh[kind];
            if (!rows.length) return;
            var tbody = document.getElementById(kind + "-tail");
            rows.slice().reverse().forEach(function (entry) {
              var tr = document.createElement("tr");
              tr.className = "fresh";
              columns[kind](entry).forEach(function (text) {
                var td = document.createElement("td");
                td.textContent = text;
                tr.appendChild(td);
              });
              tr.lastChild.className = "ids";
              tbody.insertBefore(tr, tbody.firstChild);
            });
            tail.dataset[kind + "After"] = String(rows[0].id);
          });
        });
      }).finally(function () { setTimeout(poll, 2000); });
    };
    setTimeout(poll, 2000);
  }

  function ids(entry) {
    return [entry.request_id, entry.trace_id].filter(Boolean).join(" ");
  }

  // Pages that show moving state reload themselves, unless someone is typing.
  var every = parseInt(body.dataset.refresh || "0", 10);
  if (every > 0) {
    setInterval(function () {
      var active = document.activeElement;
      if (active && (active.tagName === "INPUT" || active.tagName === "SELECT")) return;
      location.reload();
    }, every * 1000);
  }
})();
