// SPDX-License-Identifier: MIT
// report/html.hpp: HtmlPage, a self-contained HTML report assembled piece by piece: headings,
// paragraphs, a warning box, tables, figures and a gallery of thumbnails. Every image is a PNG
// embedded as a data: URI (base64, RFC 4648), so the one file opens anywhere, offline, and can be
// mailed or archived as it is; the style sheet is inline and there is no external reference. A
// short inline script checks on load that every image decoded and, if one did not, says so at the
// top of the page (and in data-loaded="n/m" of #image-check, which the tests read).
// Text is escaped (& < > " ') and invalid UTF-8 is shown as \xNN escapes (io::escape_invalid_utf8).
// Deliberately not here: JavaScript charts, external assets, templates.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "medimg/data/image.hpp"
#include "medimg/io/atomic_file.hpp"
#include "medimg/io/utf8.hpp"
#include "medimg/report/canvas.hpp"

namespace medimg::report {

/// Base64 (RFC 4648, with '=' padding, no line breaks) of `bytes`.
inline std::string base64(const std::vector<std::uint8_t>& bytes) {
    static constexpr char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 3 <= bytes.size(); i += 3) {
        const std::uint32_t v = (std::uint32_t{bytes[i]} << 16) | (std::uint32_t{bytes[i + 1]} << 8) | bytes[i + 2];
        for (int s = 18; s >= 0; s -= 6) out += digits[(v >> s) & 63u];
    }
    if (const std::size_t rest = bytes.size() - i; rest > 0) {
        const std::uint32_t v = (std::uint32_t{bytes[i]} << 16) | (rest == 2 ? std::uint32_t{bytes[i + 1]} << 8 : 0u);
        out += digits[(v >> 18) & 63u];
        out += digits[(v >> 12) & 63u];
        out += rest == 2 ? digits[(v >> 6) & 63u] : '=';
        out += '=';
    }
    return out;
}

/// `text` safe inside HTML text and attribute values.
inline std::string html_escape(const std::string& text) {
    const std::string valid = io::escape_invalid_utf8(text);
    std::string out;
    out.reserve(valid.size());
    for (char ch : valid) {
        switch (ch) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&#39;"; break;
            default: out += ch;
        }
    }
    return out;
}

/// A canvas as an <img> source: "data:image/png;base64,...".
inline std::string png_data_uri(const Canvas& c) { return "data:image/png;base64," + base64(data::encode_png(c.to_tensor(), 8)); }

/// A thumbnail and its caption, for HtmlPage::gallery.
struct Thumbnail {
    Canvas image;
    std::string caption;
};

class HtmlPage {
public:
    explicit HtmlPage(std::string title) : title_(std::move(title)) {}

    void heading(const std::string& text, int level = 2) {
        const std::string tag = "h" + std::to_string(std::clamp(level, 1, 4));
        body_ += "<" + tag + ">" + html_escape(text) + "</" + tag + ">\n";
    }
    void paragraph(const std::string& text) { body_ += "<p>" + html_escape(text) + "</p>\n"; }
    /// A paragraph in small grey type: how a figure was computed, what a term means.
    void note(const std::string& text) { body_ += "<p class=\"note\">" + html_escape(text) + "</p>\n"; }
    /// A boxed warning (the research-use notice).
    void warning(const std::string& text) { body_ += "<p class=\"warning\">" + html_escape(text) + "</p>\n"; }

    /// A table; every row must have as many cells as the header (ValueError otherwise). An empty
    /// header: no header row, and rows of any one length (a list of name, value pairs).
    void table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
        const std::size_t columns = !header.empty() ? header.size() : rows.empty() ? 0 : rows[0].size();
        for (std::size_t r = 0; r < rows.size(); ++r)  // before anything is added: a refused table leaves the page as it was
            MEDIMG_CHECK(rows[r].size() == columns, ValueError, "HtmlPage::table: row ", r, " has ", rows[r].size(), " cells for ",
                         columns, " columns");
        body_ += "<table>\n";
        if (!header.empty()) {
            body_ += "<tr>";
            for (const auto& h : header) body_ += "<th>" + html_escape(h) + "</th>";
            body_ += "</tr>\n";
        }
        for (std::size_t r = 0; r < rows.size(); ++r) {
            body_ += "<tr>";
            for (const auto& cell : rows[r]) body_ += "<td>" + html_escape(cell) + "</td>";
            body_ += "</tr>\n";
        }
        body_ += "</table>\n";
    }

    /// Figures side by side (wrapping on narrow windows), each with its caption below.
    void figures(const std::vector<Thumbnail>& figs) {
        body_ += "<div class=\"row\">\n";
        for (const auto& f : figs) figure_html(f, "figure");
        body_ += "</div>\n";
        images_ += figs.size();
    }
    /// Thumbnails shown `width` CSS pixels wide (the PNG keeps its own resolution: click to open it).
    void gallery(const std::vector<Thumbnail>& items, int width = 240) {
        body_ += "<div class=\"row gallery\" style=\"--thumb: " + std::to_string(width) + "px\">\n";
        for (const auto& f : items) figure_html(f, "thumb");
        body_ += "</div>\n";
        images_ += items.size();
    }

    std::size_t images() const { return images_; }

    /// The whole document.
    std::string str() const {
        std::string s = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>" +
                        html_escape(title_) + "</title>\n<style>\n" + style() + "</style>\n</head>\n<body>\n";
        s += "<p id=\"image-check\" class=\"warning\" hidden data-loaded=\"\"></p>\n";
        s += "<h1>" + html_escape(title_) + "</h1>\n" + body_;
        s += "<script>\nwindow.addEventListener('load', function () {\n"
             "  var im = document.images, ok = 0;\n"
             "  for (var i = 0; i < im.length; i++) if (im[i].complete && im[i].naturalWidth > 0) ok++;\n"
             "  var e = document.getElementById('image-check');\n"
             "  e.setAttribute('data-loaded', ok + '/' + im.length);\n"
             "  if (ok < im.length) { e.textContent = (im.length - ok) + ' of ' + im.length + ' figures did not load.'; e.hidden = false; }\n"
             "});\n</script>\n</body>\n</html>\n";
        return s;
    }

    /// Writes str() to `path` atomically (io::write_file_atomically: all of it or nothing).
    void save(const std::string& path) const {
        const std::string s = str();
        io::write_file_atomically(path, {{s.data(), s.size()}}, "report");
    }

private:
    void figure_html(const Thumbnail& f, const char* cls) {
        body_ += "<figure class=\"" + std::string(cls) + "\"><img src=\"" + png_data_uri(f.image) + "\" width=\"" +
                 std::to_string(f.image.width()) + "\" height=\"" + std::to_string(f.image.height()) + "\" alt=\"" +
                 html_escape(f.caption) + "\"><figcaption>" + html_escape(f.caption) + "</figcaption></figure>\n";
    }
    static std::string style() {
        return "body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1280px; padding: 0 16px; color: #222; }\n"
               "h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }\n"
               ".warning { background: #fff4e5; border: 1px solid #e6a23c; padding: 8px 12px; }\n"
               ".note { color: #666; font-size: 0.9em; }\n"
               "table { border-collapse: collapse; margin: 8px 0; font-size: 0.92em; }\n"
               "th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }\n"
               "th { background: #f4f4f4; } td { font-variant-numeric: tabular-nums; }\n"
               ".row { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }\n"
               "figure { margin: 0; } figcaption { font-size: 0.85em; color: #555; max-width: 480px; overflow-wrap: anywhere; }\n"
               "figure img { max-width: 100%; height: auto; }\n"
               ".gallery figure img { width: var(--thumb); } .gallery figcaption { max-width: var(--thumb); }\n";
    }

    std::string title_;
    std::string body_;
    std::size_t images_ = 0;
};

}  // namespace medimg::report
