// Sizes of the console's bars (progress, timeline, stage chart) come from data-width / data-left
// attributes: the Content-Security-Policy refuses style="" attributes, not styles set from a script.
// htmx.onLoad runs for the page and again for every fragment a poll swaps in.
htmx.onLoad(function (root) {
  root.querySelectorAll("[data-width], [data-left]").forEach(function (el) {
    if (el.dataset.width !== undefined) el.style.width = el.dataset.width + "%";
    if (el.dataset.left !== undefined) el.style.left = el.dataset.left + "%";
  });
  // a running attempt's duration counts on here: the job page's poll answers 204 while its stage
  // table shows nothing new, so the server does not re-send a number that only grows
  root.querySelectorAll("[data-elapsed]").forEach(function (el) {
    el.trStart = performance.now() - parseFloat(el.dataset.elapsed) * 1000;
  });
});

setInterval(function () {
  document.querySelectorAll("[data-elapsed]").forEach(function (el) {
    if (el.trStart === undefined) return;
    var seconds = (performance.now() - el.trStart) / 1000;
    el.textContent = seconds.toFixed(parseInt(el.dataset.digits || "1", 10)) + " s";
  });
}, 1000);
