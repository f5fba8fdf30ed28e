/* 镇海警民通 · 民警工作台 — layout helpers for narrow screens (console.css does the rest).
 *
 * - The rows of a table inside `[data-cards]` become stacked cards on a phone; each cell
 *   is labelled with its own column's header (`data-label`, shown by a ::before rule).
 *   The headers are the page's markup, so no label is copied here. Rows rendered later
 *   by the page's script are labelled as they arrive.
 * - The top bar's nav is a horizontal strip on a phone: the current page's link is
 *   scrolled into view.
 */
"use strict";

(() => {
  function labelCells(table) {
    const head = table.tHead && table.tHead.rows[0];
    if (!head) return;
    const labels = Array.from(head.cells, (th) => th.textContent.trim());
    for (const body of table.tBodies) {
      for (const row of body.rows) {
        let column = 0;
        for (const cell of row.cells) {
          const label = labels[column];
          if (label && cell.dataset.label !== label) cell.dataset.label = label;
          column += cell.colSpan || 1;
        }
      }
    }
  }

  for (const table of document.querySelectorAll("[data-cards] > table")) {
    labelCells(table);
    // Rows come and go (re-renders, pages); text changes inside a cell do not matter.
    new MutationObserver((records) => {
      if (records.some((r) => r.target === table || r.target.tagName === "TBODY")) {
        labelCells(table);
      }
    }).observe(table, { childList: true, subtree: true });
  }

  const nav = document.querySelector(".topbar nav");
  const current = nav && nav.querySelector("[aria-current='page']");
  if (current && nav.scrollWidth > nav.clientWidth) {
    const link = current.getBoundingClientRect();
    const strip = nav.getBoundingClientRect();
    nav.scrollLeft += link.left - strip.left - (strip.width - link.width) / 2;
  }
})();
