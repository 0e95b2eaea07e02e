// Velador's local app: the only script (Content-Security-Policy: script-src 'self'). Pages work
// without it; it adds a live countdown, the passphrase strength meter and deposit progress.
"use strict";
(function () {
  function pad(n) { return (n < 10 ? "0" : "") + n; }

  // Countdown to the next deadline: d hh:mm:ss, from the server's clock at render time.
  var cd = document.querySelector(".countdown[data-deadline]");
  if (cd) {
    var left = parseInt(cd.dataset.deadline, 10) - parseInt(cd.dataset.now, 10);
    var start = Date.now();
    var tick = function () {
      var s = Math.max(0, left - Math.floor((Date.now() - start) / 1000));
      var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
      var m = Math.floor((s % 3600) / 60), sec = s % 60;
      cd.textContent = (d ? d + " d " : "") + pad(h) + ":" + pad(m) + ":" + pad(sec);
    };
    tick();
    setInterval(tick, 1000);
  }

  // Strength meter: the passphrase goes to this local server in a POST body, never a URL.
  var pw = document.querySelector("#welcome #passphrase");
  if (pw) {
    var meter = document.getElementById("meter"), text = document.getElementById("meter-text");
    var name = document.getElementById("name"), timer = null;
    pw.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        var body = new URLSearchParams();
        body.set("passphrase", pw.value);
        body.set("name", name ? name.value : "");
        var role = document.querySelector("#welcome input[name=role]:checked");
        body.set("role", role ? role.value : "");  // the words `velador id new` also counts
        fetch("/strength", { method: "POST", body: body, credentials: "same-origin" })
          .then(function (r) { return r.json(); })
          .then(function (j) { meter.value = j.score; text.textContent = j.label; });
      }, 250);
    });
  }

  // Deposit progress: poll this server, then reload for the final page.
  var job = document.getElementById("job");
  if (job && job.dataset.state === "running") {
    var bar = document.getElementById("bar");
    var poll = function () {
      fetch(job.dataset.progress, { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (j) {
          if (j.total) { bar.max = j.total; bar.value = j.done; }
          if (j.state === "running") { setTimeout(poll, 500); } else { location.reload(); }
        });
    };
    setTimeout(poll, 300);
  }
})();
