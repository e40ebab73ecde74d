"""The readable text of an HTML page, for the folder loader (rag.corpus.load_folder).

LlamaIndex's directory reader reads `.html` as plain text, so passages were markup: a generated
documentation page's chunks were stylesheet links, SVG icon paths and theme menus, and the LLM
wrote questions about fonts. Here the page's <main> (or <article>, else <body>) is kept without
scripts, styles, navigation, headers, footers and forms; blocks (paragraphs, headings, list items,
table rows) become paragraphs, and <pre> code keeps its lines and indentation.
"""
from __future__ import annotations

import re

# Never content: page furniture, and elements whose text is code or icons.
DROPPED = ("script", "style", "noscript", "template", "svg", "head", "nav", "header", "footer", "aside",
           "form", "button", "iframe", "select")
BLOCKS = ("p", "div", "section", "article", "main", "li", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6",
          "blockquote", "table", "tr", "figure", "figcaption", "hr", "ul", "ol", "dl")
_PRE = "\x00{}\x00"


def html_text(raw: str) -> str:
    try:
        from bs4 import BeautifulSoup
    except ImportError as e:  # a dependency of llama-index-readers-file, so normally present
        raise ImportError("reading .html needs beautifulsoup4: pip install beautifulsoup4") from e

    soup = BeautifulSoup(raw, "html.parser")
    for tag in soup.find_all(DROPPED):
        tag.decompose()
    root = soup.find("main") or soup.find("article") or soup.body or soup
    code: list[str] = []
    for pre in root.find_all("pre"):
        code.append(pre.get_text().strip("\n"))
        pre.replace_with(f"\n\n{_PRE.format(len(code) - 1)}\n\n")
    for br in root.find_all("br"):
        br.replace_with("\n")
    for block in root.find_all(BLOCKS):
        block.insert_before("\n\n")
        block.insert_after("\n\n")
    paragraphs = []
    for part in re.split(r"\n\s*\n", root.get_text()):
        words = " ".join(part.split())
        if m := re.fullmatch(_PRE.format(r"(\d+)"), words):
            words = code[int(m.group(1))]
        if words:
            paragraphs.append(words)
    return "\n\n".join(paragraphs)
