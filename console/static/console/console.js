// Sizes of the console's bars (progress, timeline, stage chart) come from data-width / data-left
// attributes: the Content-Security-Policy refuses style="" attributes, not styles set from a script.
// htmx.onLoad runs for the page and again for every fragment a poll swaps in.
htmx.onLoad(function (root) {
  root.querySelectorAll("[data-width], [data-left]").forEach(function (el) {
    if (el.dataset.width !== undefined) el.style.width = el.dataset.width + "%";
    if (el.dataset.left !== undefined) el.style.left = el.dataset.left + "%";
  });
});
