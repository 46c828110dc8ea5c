// Plain-text SVG charts for the paper's figures: bar charts for the ablations (Fig. 2 saliency
// depth, Fig. 3 fusion point: accuracy per variant plus the baseline) and line charts (accuracy vs
// k per method). No dependencies; the files open in any browser. Every drawn element carries a
// class (bar, errbar, value, line, point, tick, legend) so tools and tests can find them.
#pragma once
#include <halsal/core/error.hpp>
#include <halsal/core/text.hpp>
#include <halsal/eval/table.hpp>  // line_chart_from_table

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace halsal::viz {

/// Tableau-10 colours: series i gets palette()[i % 10].
inline const std::vector<std::string>& palette() {
  static const std::vector<std::string> p = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                             "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
  return p;
}

/// One series of bars: a value (and optional error, e.g. std over seeds) per category.
struct BarSeries {
  std::string name;                     ///< legend entry (legend shown when there are 2+ series)
  std::vector<double> values;           ///< one per category; NaN = no bar
  std::vector<double> errors;           ///< empty, or one ± half-length per category (NaN/0 = none)
  std::string color;                    ///< empty = palette colour
  std::vector<std::string> bar_colors;  ///< optional per-category override (e.g. grey baseline)
};

/// A bar chart: `categories` along x; one bar per series in each category (grouped when 2+ series).
struct BarChart {
  std::string title, x_label, y_label;
  std::vector<std::string> categories;
  std::vector<BarSeries> series;
  std::optional<double> y_min, y_max;  ///< axis range; unset = fitted to the data (and errors)
  bool zero_based = false;  ///< fitted range includes 0 (off: zoom like the paper's 88-92 axis)
  int width = 640, height = 400;
  int decimals = 1;          ///< digits of the value labels
  bool value_labels = true;  ///< print each bar's value above it
};

/// One line: a y value (and optional error) per x tick; NaN = gap.
struct LineSeries {
  std::string name;
  std::vector<double> values;
  std::vector<double> errors;  ///< empty, or one ± half-length per x tick
  std::string color;           ///< empty = palette colour
};

/// A line chart over categorical, evenly spaced x ticks (e.g. k = 1 2 3 5 10 K).
struct LineChart {
  std::string title, x_label, y_label;
  std::vector<std::string> x_ticks;
  std::vector<LineSeries> series;
  std::optional<double> y_min, y_max;
  bool zero_based = false;
  int width = 640, height = 400;
  int decimals = 1;
  bool value_labels = false;
};

namespace detail {

inline std::string xml_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&':
        o += "&amp;";
        break;
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '"':
        o += "&quot;";
        break;
      case '\'':
        o += "&apos;";
        break;
      default:
        o += c;
    }
  }
  return o;
}

inline std::string num(double v) {
  return format_fixed(v, 2);
}

// A "nice" tick step (1, 2, 2.5 or 5 × 10^n) giving about `target` intervals over `range`.
inline double nice_step(double range, int target = 5) {
  double raw = range / std::max(1, target);
  double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

struct Axis {
  double lo = 0, hi = 1, step = 0.2;
};

// Fits a y axis to [lo, hi] (data incl. errors), honouring the user's fixed ends.
inline Axis fit_axis(double lo, double hi, std::optional<double> ymin, std::optional<double> ymax,
                     bool zero_based) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) lo = 0, hi = 1;
  if (zero_based) lo = std::min(lo, 0.0), hi = std::max(hi, 0.0);
  if (!zero_based && !ymin) lo -= 0.05 * (hi - lo);  // the smallest bar stays visible
  if (ymin) lo = *ymin;
  if (ymax) hi = *ymax;
  if (hi <= lo) {
    double pad = std::max(std::abs(lo) * 0.1, 1.0);
    if (!ymin) lo -= pad;
    if (!ymax || hi <= lo) hi = lo + 2 * pad;
  }
  Axis a;
  a.step = nice_step(hi - lo);
  a.lo = ymin ? *ymin : std::floor(lo / a.step + 1e-9) * a.step;
  a.hi = ymax ? *ymax : std::ceil(hi / a.step - 1e-9) * a.step;
  if (!ymin && !ymax && a.hi - a.lo < 2 * a.step) a.hi += a.step;  // room for value labels
  return a;
}

struct Frame {
  double left = 64, right = 20, top = 44, bottom = 64;
  double w = 0, h = 0;
  Axis axis;
  double y(double v) const { return top + h * (1 - (v - axis.lo) / (axis.hi - axis.lo)); }
};

inline void open_svg(std::ostringstream& os, int width, int height) {
  os << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
     << "\" viewBox=\"0 0 " << width << ' ' << height
     << "\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"12\">\n"
     << "<rect class=\"background\" x=\"0\" y=\"0\" width=\"" << width << "\" height=\"" << height
     << "\" fill=\"white\"/>\n";
}

// Title, y grid/ticks/labels, axes lines and axis titles.
inline void draw_frame(std::ostringstream& os, const Frame& f, int width, int height,
                       const std::string& title, const std::string& x_label,
                       const std::string& y_label, int decimals) {
  if (!title.empty())
    os << "<text class=\"title\" x=\"" << num(width / 2.0)
       << "\" y=\"24\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\">"
       << xml_escape(title) << "</text>\n";
  const double n_ticks = std::round((f.axis.hi - f.axis.lo) / f.axis.step);
  const int tick_decimals = std::max(0, std::min(decimals, 3));
  for (int i = 0; i <= static_cast<int>(n_ticks) && i <= 50; ++i) {
    double v = f.axis.lo + i * f.axis.step;
    double y = f.y(v);
    os << "<line class=\"grid\" x1=\"" << num(f.left) << "\" y1=\"" << num(y) << "\" x2=\""
       << num(f.left + f.w) << "\" y2=\"" << num(y) << "\" stroke=\"#e0e0e0\"/>\n"
       << "<text class=\"tick\" x=\"" << num(f.left - 6) << "\" y=\"" << num(y + 4)
       << "\" text-anchor=\"end\">"
       << format_fixed(
              v, std::abs(f.axis.step - std::round(f.axis.step)) < 1e-9 ? 0 : tick_decimals)
       << "</text>\n";
  }
  os << "<line class=\"axis\" x1=\"" << num(f.left) << "\" y1=\"" << num(f.top) << "\" x2=\""
     << num(f.left) << "\" y2=\"" << num(f.top + f.h) << "\" stroke=\"black\"/>\n"
     << "<line class=\"axis\" x1=\"" << num(f.left) << "\" y1=\"" << num(f.top + f.h) << "\" x2=\""
     << num(f.left + f.w) << "\" y2=\"" << num(f.top + f.h) << "\" stroke=\"black\"/>\n";
  if (!x_label.empty())
    os << "<text class=\"axis-label\" x=\"" << num(f.left + f.w / 2) << "\" y=\""
       << num(height - 12.0) << "\" text-anchor=\"middle\">" << xml_escape(x_label) << "</text>\n";
  if (!y_label.empty())
    os << "<text class=\"axis-label\" x=\"16\" y=\"" << num(f.top + f.h / 2)
       << "\" text-anchor=\"middle\" transform=\"rotate(-90 16 " << num(f.top + f.h / 2) << ")\">"
       << xml_escape(y_label) << "</text>\n";
}

inline void draw_legend(std::ostringstream& os, const Frame& f,
                        const std::vector<std::string>& names,
                        const std::vector<std::string>& colors) {
  double x = f.left + f.w + 12, y = f.top + 4;
  for (std::size_t i = 0; i < names.size(); ++i, y += 18) {
    os << "<rect class=\"legend\" x=\"" << num(x) << "\" y=\"" << num(y)
       << "\" width=\"12\" height=\"12\" fill=\"" << colors[i] << "\"/>\n"
       << "<text class=\"legend\" x=\"" << num(x + 16) << "\" y=\"" << num(y + 10) << "\">"
       << xml_escape(names[i]) << "</text>\n";
  }
}

inline void error_bar(std::ostringstream& os, double x, double y_lo, double y_hi, double half_cap) {
  os << "<path class=\"errbar\" d=\"M" << num(x) << ' ' << num(y_lo) << "V" << num(y_hi) << "M"
     << num(x - half_cap) << ' ' << num(y_lo) << "H" << num(x + half_cap) << "M"
     << num(x - half_cap) << ' ' << num(y_hi) << "H" << num(x + half_cap)
     << "\" stroke=\"black\" fill=\"none\"/>\n";
}

inline double at_or_nan(const std::vector<double>& v, std::size_t i) {
  return i < v.size() ? v[i] : std::numeric_limits<double>::quiet_NaN();
}

inline double legend_width(const std::vector<std::string>& names) {
  std::size_t longest = 0;
  for (auto& n : names) longest = std::max(longest, n.size());
  return 36 + 7.0 * static_cast<double>(longest);
}

}  // namespace detail

/// The bar chart as SVG text; throws halsal::Error when a series' length does not match categories.
inline std::string render_svg(const BarChart& c) {
  const std::size_t G = c.categories.size(), S = c.series.size();
  for (const auto& s : c.series) {
    if (s.values.size() != G)
      throw Error("bar chart: series '" + s.name + "' has " + std::to_string(s.values.size()) +
                  " values for " + std::to_string(G) + " categories");
    if (!s.errors.empty() && s.errors.size() != G)
      throw Error("bar chart: series '" + s.name + "' has errors of the wrong length");
    if (!s.bar_colors.empty() && s.bar_colors.size() != G)
      throw Error("bar chart: series '" + s.name + "' has bar_colors of the wrong length");
  }
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const auto& s : c.series)
    for (std::size_t i = 0; i < G; ++i) {
      double v = s.values[i], e = detail::at_or_nan(s.errors, i);
      if (!std::isfinite(v)) continue;
      if (!std::isfinite(e)) e = 0;
      lo = std::min(lo, v - std::abs(e));
      hi = std::max(hi, v + std::abs(e));
    }
  std::vector<std::string> names, colors;
  for (std::size_t i = 0; i < S; ++i) {
    names.push_back(c.series[i].name);
    colors.push_back(c.series[i].color.empty() ? palette()[i % palette().size()]
                                               : c.series[i].color);
  }
  detail::Frame f;
  if (S > 1) f.right += detail::legend_width(names);
  f.w = std::max(10.0, c.width - f.left - f.right);
  f.h = std::max(10.0, c.height - f.top - f.bottom);
  f.axis = detail::fit_axis(lo, hi, c.y_min, c.y_max, c.zero_based);

  std::ostringstream os;
  detail::open_svg(os, c.width, c.height);
  detail::draw_frame(os, f, c.width, c.height, c.title, c.x_label, c.y_label, c.decimals);
  const double group_w = G ? f.w / static_cast<double>(G) : f.w;
  const double bar_w = S ? 0.8 * group_w / static_cast<double>(S) : 0;
  const double base_v = std::clamp(0.0, f.axis.lo, f.axis.hi);
  for (std::size_t g = 0; g < G; ++g) {
    const double gx = f.left + group_w * static_cast<double>(g);
    os << "<text class=\"category\" x=\"" << detail::num(gx + group_w / 2) << "\" y=\""
       << detail::num(f.top + f.h + 18) << "\" text-anchor=\"middle\">"
       << detail::xml_escape(c.categories[g]) << "</text>\n";
    for (std::size_t s = 0; s < S; ++s) {
      const BarSeries& ser = c.series[s];
      double v = ser.values[g];
      if (!std::isfinite(v)) continue;
      double x = gx + 0.1 * group_w + bar_w * static_cast<double>(s);
      double vc = std::clamp(v, f.axis.lo, f.axis.hi);
      double y0 = f.y(std::max(vc, base_v)), y1 = f.y(std::min(vc, base_v));
      const std::string& fill =
          ser.bar_colors.empty() || ser.bar_colors[g].empty() ? colors[s] : ser.bar_colors[g];
      std::string label = format_fixed(v, c.decimals);
      double e = detail::at_or_nan(ser.errors, g);
      bool has_err = std::isfinite(e) && e != 0;
      os << "<rect class=\"bar\" x=\"" << detail::num(x) << "\" y=\"" << detail::num(y0)
         << "\" width=\"" << detail::num(bar_w) << "\" height=\"" << detail::num(y1 - y0)
         << "\" fill=\"" << fill << "\"><title>" << detail::xml_escape(ser.name)
         << (ser.name.empty() ? "" : " ") << detail::xml_escape(c.categories[g]) << ": " << label
         << (has_err ? " ± " : "")
         << (has_err ? format_fixed(std::abs(e), c.decimals) : "")
         << "</title></rect>\n";
      double top_y = f.y(vc);
      if (has_err) {
        double a = f.y(std::clamp(v + std::abs(e), f.axis.lo, f.axis.hi));
        double b = f.y(std::clamp(v - std::abs(e), f.axis.lo, f.axis.hi));
        detail::error_bar(os, x + bar_w / 2, b, a, std::min(6.0, bar_w / 4));
        top_y = a;
      }
      if (c.value_labels)
        os << "<text class=\"value\" x=\"" << detail::num(x + bar_w / 2) << "\" y=\""
           << detail::num(top_y - 4) << "\" text-anchor=\"middle\" font-size=\"11\">" << label
           << "</text>\n";
    }
  }
  if (S > 1) detail::draw_legend(os, f, names, colors);
  os << "</svg>\n";
  return os.str();
}

/// The line chart as SVG text; throws halsal::Error when a series' length does not match x_ticks.
inline std::string render_svg(const LineChart& c) {
  const std::size_t X = c.x_ticks.size(), S = c.series.size();
  for (const auto& s : c.series) {
    if (s.values.size() != X)
      throw Error("line chart: series '" + s.name + "' has " + std::to_string(s.values.size()) +
                  " values for " + std::to_string(X) + " x ticks");
    if (!s.errors.empty() && s.errors.size() != X)
      throw Error("line chart: series '" + s.name + "' has errors of the wrong length");
  }
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const auto& s : c.series)
    for (std::size_t i = 0; i < X; ++i) {
      double v = s.values[i], e = detail::at_or_nan(s.errors, i);
      if (!std::isfinite(v)) continue;
      if (!std::isfinite(e)) e = 0;
      lo = std::min(lo, v - std::abs(e));
      hi = std::max(hi, v + std::abs(e));
    }
  std::vector<std::string> names, colors;
  for (std::size_t i = 0; i < S; ++i) {
    names.push_back(c.series[i].name);
    colors.push_back(c.series[i].color.empty() ? palette()[i % palette().size()]
                                               : c.series[i].color);
  }
  detail::Frame f;
  if (S > 1) f.right += detail::legend_width(names);
  f.w = std::max(10.0, c.width - f.left - f.right);
  f.h = std::max(10.0, c.height - f.top - f.bottom);
  f.axis = detail::fit_axis(lo, hi, c.y_min, c.y_max, c.zero_based);

  std::ostringstream os;
  detail::open_svg(os, c.width, c.height);
  detail::draw_frame(os, f, c.width, c.height, c.title, c.x_label, c.y_label, c.decimals);
  const double dx = X ? f.w / static_cast<double>(X) : f.w;
  auto xpos = [&](std::size_t i) { return f.left + dx * (static_cast<double>(i) + 0.5); };
  for (std::size_t i = 0; i < X; ++i)
    os << "<text class=\"category\" x=\"" << detail::num(xpos(i)) << "\" y=\""
       << detail::num(f.top + f.h + 18) << "\" text-anchor=\"middle\">"
       << detail::xml_escape(c.x_ticks[i]) << "</text>\n";
  for (std::size_t s = 0; s < S; ++s) {
    const LineSeries& ser = c.series[s];
    std::string d;
    bool pen_down = false;
    for (std::size_t i = 0; i < X; ++i) {
      double v = ser.values[i];
      if (!std::isfinite(v)) {
        pen_down = false;
        continue;
      }
      d += pen_down ? 'L' : 'M';
      d += detail::num(xpos(i));
      d += ' ';
      d += detail::num(f.y(std::clamp(v, f.axis.lo, f.axis.hi)));
      pen_down = true;
    }
    if (!d.empty())
      os << "<path class=\"line\" d=\"" << d << "\" stroke=\"" << colors[s]
         << "\" stroke-width=\"2\" fill=\"none\"><title>" << detail::xml_escape(ser.name)
         << "</title></path>\n";
    for (std::size_t i = 0; i < X; ++i) {
      double v = ser.values[i];
      if (!std::isfinite(v)) continue;
      double e = detail::at_or_nan(ser.errors, i);
      double y = f.y(std::clamp(v, f.axis.lo, f.axis.hi));
      if (std::isfinite(e) && e != 0)
        detail::error_bar(os, xpos(i), f.y(std::clamp(v - std::abs(e), f.axis.lo, f.axis.hi)),
                          f.y(std::clamp(v + std::abs(e), f.axis.lo, f.axis.hi)), 4);
      std::string label = format_fixed(v, c.decimals);
      os << "<circle class=\"point\" cx=\"" << detail::num(xpos(i)) << "\" cy=\"" << detail::num(y)
         << "\" r=\"3.5\" fill=\"" << colors[s] << "\"><title>" << detail::xml_escape(ser.name)
         << (ser.name.empty() ? "" : " ") << detail::xml_escape(c.x_ticks[i]) << ": " << label
         << "</title></circle>\n";
      if (c.value_labels)
        os << "<text class=\"value\" x=\"" << detail::num(xpos(i)) << "\" y=\""
           << detail::num(y - 8) << "\" text-anchor=\"middle\" font-size=\"11\">" << label
           << "</text>\n";
    }
  }
  if (S > 1) detail::draw_legend(os, f, names, colors);
  os << "</svg>\n";
  return os.str();
}

/// Writes a bar chart as an SVG file, atomically.
inline void write_svg(const BarChart& c, const std::filesystem::path& path) {
  io::write_file_atomic(path, render_svg(c));
}

/// Writes a line chart as an SVG file, atomically.
inline void write_svg(const LineChart& c, const std::filesystem::path& path) {
  io::write_file_atomic(path, render_svg(c));
}

/// Accuracy vs k for every method of a results table (mean over seeds, std as error bars).
inline LineChart line_chart_from_table(const eval::ResultsTable& t, const std::string& title,
                                       eval::Metric m = eval::Metric::top1) {
  LineChart c;
  c.title = title;
  c.x_label = "training images per class (k)";
  c.y_label = m == eval::Metric::top1 ? "top-1 accuracy (%)" : "top-5 accuracy (%)";
  auto ks = t.ks();
  for (int k : ks) c.x_ticks.push_back(data::k_label(k));
  for (const auto& method : t.methods()) {
    LineSeries s;
    s.name = method;
    for (int k : ks) {
      auto cell = t.cell(method, k, m);
      s.values.push_back(cell.mean);
      s.errors.push_back(cell.n > 1 ? cell.std : 0.0);
    }
    c.series.push_back(std::move(s));
  }
  return c;
}

}  // namespace halsal::viz
