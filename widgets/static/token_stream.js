// Side-by-side columns of streamed tokens, each token coloured by its score on a trait.
// Model: columns = [{key, title, tokens: [[text, score|null], ...], status}], scale, label,
// legend (the words after the chips), positive_rgb / negative_rgb (widgets/common/colours.py).

function colour(score, scale, rgbs) {
  if (score === null || score === undefined || !isFinite(score) || !(scale > 0)) {
    return "transparent";
  }
  const t = Math.max(-1, Math.min(1, score / scale));
  // red for positive, blue for negative (colours.py); alpha grows with |t|
  const rgb = (t >= 0 ? rgbs.positive : rgbs.negative).join(", ");
  return `rgba(${rgb}, ${(0.08 + 0.6 * Math.abs(t)).toFixed(3)})`;
}

function renderColumn(column, scale, label, rgbs) {
  const box = document.createElement("div");
  box.className = "tl-column";
  box.dataset.role = column.key;
  const head = document.createElement("div");
  head.className = "tl-column-title";
  head.textContent = column.title;
  const text = document.createElement("div");
  text.className = "tl-text";
  for (const [piece, score] of column.tokens) {
    const span = document.createElement("span");
    span.className = "tl-token";
    span.textContent = piece;
    span.style.background = colour(score, scale, rgbs);
    if (score !== null && score !== undefined) {
      span.title = `${JSON.stringify(piece)}  ${label}: ${score.toFixed(3)}`;
      span.dataset.score = String(score);
    }
    text.appendChild(span);
  }
  const status = document.createElement("div");
  status.className = "tl-column-status";
  status.textContent = column.status || "";
  box.append(head, text, status);
  return box;
}

function legend(scale, words, rgbs) {
  const bar = document.createElement("div");
  bar.className = "tl-legend";
  for (const value of [-scale, 0, scale]) {
    const chip = document.createElement("span");
    chip.className = "tl-legend-chip";
    const fill = colour(value, scale, rgbs);
    chip.style.background = fill === "transparent" ? "#fff" : fill;
    chip.textContent = (value > 0 ? "+" : "") + value.toFixed(2);
    bar.appendChild(chip);
  }
  const name = document.createElement("span");
  name.className = "tl-legend-label";
  name.textContent = words;
  bar.appendChild(name);
  return bar;
}

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "tl-stream";
  el.appendChild(root);
  const draw = () => {
    const scale = model.get("scale");
    const label = model.get("label");
    const rgbs = { positive: model.get("positive_rgb"), negative: model.get("negative_rgb") };
    const grid = document.createElement("div");
    grid.className = "tl-columns";
    for (const column of model.get("columns")) {
      grid.appendChild(renderColumn(column, scale, label, rgbs));
    }
    root.replaceChildren(grid, legend(scale, model.get("legend"), rgbs));
  };
  draw();
  for (const name of ["columns", "scale", "label", "legend", "positive_rgb", "negative_rgb"]) {
    model.on(`change:${name}`, draw);
  }
}

export default { render };
