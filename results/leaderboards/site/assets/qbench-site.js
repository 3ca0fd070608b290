/* qbench leaderboard page: builds the sortable, filterable table and the runs table from the page's JSON
   (script#qbench-data) with the vendored Tabulator. No network; no state kept outside the page. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("qbench-data").textContent);

  function esc(text) {
    return String(text === undefined || text === null ? "" : text)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  }

  function column(spec) {
    var def = {
      title: spec.title, field: spec.key, headerTooltip: spec.tooltip || spec.title,
      sorter: spec.numeric ? "number" : "string", sorterParams: {alignEmptyValues: "bottom"},
      hozAlign: spec.numeric ? "right" : "left", frozen: spec.frozen, headerSortStartingDir: spec.numeric && !spec.ascending ? "desc" : "asc",
      formatter: function (cell) {
        var row = cell.getData();
        var text = esc(row[spec.key + "__text"]);
        if (spec.key === "mean" && row._top) {
          text = "<strong>" + text + "</strong>";
        }
        if (spec.swatch && row._color) {
          text = '<span class="swatch" style="background:' + esc(row._color) + '"></span>' + text;
        }
        return text;
      },
      tooltip: function (event, cell) {
        var row = cell.getData();
        return row[spec.key + "__tip"] || "";
      }
    };
    return def;
  }

  function grouped(specs) {
    var out = [], last = null;
    specs.forEach(function (spec) {
      var col = column(spec);
      if (!spec.group) { out.push(col); last = null; return; }
      if (last && last.title === spec.group) { last.columns.push(col); return; }
      last = {title: spec.group, columns: [col]};
      out.push(last);
    });
    return out;
  }

  var columns = grouped(data.columns);
  if (data.rows.length && data.rows[0]._runs !== undefined) {
    columns.push({title: "runs", field: "_runs", hozAlign: "right", sorter: "number", headerTooltip: "runs behind the row: click the row",
                  formatter: function (cell) { return '<a href="#runs-section" class="runs-link">' + esc(cell.getValue()) + " ▸</a>"; }});
  }

  var table = new Tabulator("#leaderboard", {
    data: data.rows, index: "_key", columns: columns, layout: "fitData", renderVertical: "basic",
    columnHeaderVertAlign: "bottom", headerSortClickElement: "header", maxHeight: "75vh"
  });
  var runs = new Tabulator("#runs", {
    data: data.runs, index: "run_id", layout: "fitData", renderVertical: "basic", maxHeight: "60vh",
    columns: [
      {title: "run id", field: "run_id", frozen: true},
      {title: "row · setting", field: "cell"},
      {title: "seed", field: "seed", hozAlign: "right", sorter: "number"},
      {title: "status", field: "status"},
      {title: data.metric || "value", field: "value", hozAlign: "right", sorter: "number",
       formatter: function (cell) { var v = cell.getValue(); return v === null || v === undefined ? "—" : esc(Number(v).toFixed(2)); }},
      {title: "epochs", field: "epochs", hozAlign: "right"},
      {title: "wall time", field: "wall_time", hozAlign: "right"},
      {title: "commit", field: "commit", formatter: function (cell) { return cell.getValue() ? "<code>" + esc(cell.getValue()) + "</code>" : "—"; }},
      {title: "versions", field: "versions"},
      {title: "device", field: "device"},
      {title: "reproduce", field: "command", formatter: function (cell) { return "<code>" + esc(cell.getValue()) + "</code>"; }},
      {title: "error", field: "error", tooltip: true}
    ]
  });

  var selects = {};
  var search = document.getElementById("filter-search");
  var holder = document.getElementById("filter-selects");
  data.filters.forEach(function (filter) {
    var label = document.createElement("label");
    label.textContent = filter.label + " ";
    var select = document.createElement("select");
    select.setAttribute("data-field", filter.field);
    select.id = "filter-" + filter.label;
    var all = document.createElement("option");
    all.value = ""; all.textContent = "all";
    select.appendChild(all);
    filter.values.forEach(function (value) {
      var option = document.createElement("option");
      option.value = value; option.textContent = value;
      select.appendChild(option);
    });
    select.addEventListener("change", apply);
    label.appendChild(select);
    holder.appendChild(label);
    selects[filter.field] = select;
  });

  function text(row, field) {
    var shown = row[field + "__text"];
    return String(shown !== undefined ? shown : (row[field] === undefined || row[field] === null ? "" : row[field]));
  }

  function matches(row) {
    for (var field in selects) {
      var wanted = selects[field].value;
      if (wanted && text(row, field) !== wanted) { return false; }
    }
    var needle = search.value.trim().toLowerCase();
    if (!needle) { return true; }
    return data.columns.some(function (spec) { return text(row, spec.key).toLowerCase().indexOf(needle) >= 0; });
  }

  function apply() { table.setFilter(matches); }

  function count() {
    var shown = table.getDataCount("active");
    document.getElementById("row-count").textContent = shown + " of " + data.rows.length + " rows";
  }

  search.addEventListener("input", apply);
  document.getElementById("filter-reset").addEventListener("click", function () {
    search.value = "";
    Object.keys(selects).forEach(function (field) { selects[field].value = ""; });
    table.clearFilter();
  });
  document.getElementById("runs-all").addEventListener("click", function () {
    runs.clearFilter();
    document.getElementById("runs-of").textContent = "";
  });

  table.on("dataFiltered", function () { setTimeout(count, 0); });
  table.on("rowClick", function (event, row) {
    var key = row.getData()._key;
    runs.setFilter("cell", "=", key);
    document.getElementById("runs-of").textContent = "of " + key;
    document.getElementById("runs-section").scrollIntoView();
  });
  table.on("tableBuilt", function () {
    count();
    window.qbench.ready = true;
  });
  window.qbench = {table: table, runs: runs, data: data, ready: false};
})();
