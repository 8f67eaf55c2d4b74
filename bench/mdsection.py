"""One section of a markdown file (bench/RESULTS.md) that a benchmark owns:
the text between its two marker comments, replaced on each run, or appended
when the file does not have it yet."""
from pathlib import Path


def markers(name):
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def write_section(path, name, lines):
    """Put lines (the section's body, without its markers) into path."""
    begin, end = markers(name)
    text = "\n".join([begin, *lines, end])
    p = Path(path)
    old = p.read_text() if p.exists() else ""
    if begin in old and end in old:
        new = old[:old.index(begin)] + text + old[old.index(end) + len(end):]
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    p.write_text(new)
