#!/usr/bin/env python3
"""Offline checks of terraform/ (no provider downloads): every file parses
(python-hcl2), every reference resolves within its module, every variable
has a type and a description, every module call passes only variables the
module declares and all it requires, and every checkov skip carries a
reason. Exit 1 with each problem as FILE: what."""
import pathlib
import re
import sys

import hcl2

ROOT = pathlib.Path(__file__).resolve().parent
problems = []


def load(path):
    try:
        with open(path) as f:
            return hcl2.load(f)
    except Exception as e:  # the parser's own words
        problems.append(f"{path}: does not parse: {e}")
        return {}


def strip(s):
    # Parsers differ: some wrap each attribute in a one-element list.
    if isinstance(s, list) and len(s) == 1:
        s = s[0]
    return s.strip('"') if isinstance(s, str) else s


def module_dirs():
    return sorted({p.parent for p in ROOT.rglob("*.tf")})


def declared(folder):
    d = {"var": {}, "local": set(), "resource": set(), "data": set(), "module": {}, "output": set()}
    for tf in sorted(folder.glob("*.tf")):
        doc = load(tf)
        for block in doc.get("variable", []):
            for name, body in block.items():
                d["var"][strip(name)] = (tf, body)
        for block in doc.get("locals", []):
            d["local"].update(strip(k) for k in block)
        for block in doc.get("resource", []):
            for rtype, named in block.items():
                for name in named:
                    d["resource"].add(f"{strip(rtype)}.{strip(name)}")
        for block in doc.get("data", []):
            for rtype, named in block.items():
                for name in named:
                    d["data"].add(f"{strip(rtype)}.{strip(name)}")
        for block in doc.get("module", []):
            for name, body in block.items():
                d["module"][strip(name)] = (tf, body)
        for block in doc.get("output", []):
            for name, body in block.items():
                d["output"].add(strip(name))
                if "description" not in body:
                    problems.append(f"{tf}: output {strip(name)} has no description")
    return d


REF = re.compile(r"(?<![\w.])(var|local|module|data)\.([A-Za-z_][\w-]*)(?:\.([A-Za-z_][\w-]*))?")
RES = re.compile(r"(?<![\w.\"/-])(aws_[a-z0-9_]+)\.([A-Za-z_][\w-]*)")

for folder in module_dirs():
    d = declared(folder)
    for name, (tf, body) in d["var"].items():
        for need in ("type", "description"):
            if need not in body:
                problems.append(f"{tf}: variable {name} has no {need}")
    texts = {tf: tf.read_text() for tf in folder.glob("*.tf")}
    for tf, text in texts.items():
        code = "\n".join(l for l in text.splitlines() if not l.strip().startswith("#"))
        for kind, name, sub in REF.findall(code):
            if kind == "var" and name not in d["var"]:
                problems.append(f"{tf}: var.{name} is not declared")
            elif kind == "local" and name not in d["local"]:
                problems.append(f"{tf}: local.{name} is not declared")
            elif kind == "module" and name not in d["module"]:
                problems.append(f"{tf}: module.{name} is not declared")
            elif kind == "data" and f"{name}.{sub}" not in d["data"]:
                problems.append(f"{tf}: data.{name}.{sub} is not declared")
        for rtype, name in RES.findall(code):
            if f"{rtype}.{name}" not in d["resource"] and not code[: code.find(f"{rtype}.{name}")].rstrip().endswith('"'):
                # A resource type in a block header is followed by a quoted name, not `.name`.
                problems.append(f"{tf}: {rtype}.{name} is not declared")
        for m in re.finditer(r"#\s*checkov:skip=([A-Z0-9_]+)(:?)(.*)", text):
            if not m.group(2) or len(m.group(3).strip()) < 10:
                problems.append(f"{tf}: checkov skip {m.group(1)} carries no reason")
    # Module calls: only declared inputs, every required one given; outputs used exist.
    for name, (tf, body) in d["module"].items():
        source = strip(body.get("source", ""))
        target = (folder / source).resolve()
        if not target.is_dir():
            problems.append(f"{tf}: module {name}: no folder {source}")
            continue
        inner = declared(target)
        given = {k for k in body if k not in ("source", "providers", "depends_on", "count", "for_each", "version") and not k.startswith("__")}
        for k in sorted(given - set(inner["var"])):
            problems.append(f"{tf}: module {name} is given `{k}`, which {source} does not declare")
        for v, (_, vb) in inner["var"].items():
            if "default" not in vb and v not in given:
                problems.append(f"{tf}: module {name} is not given `{v}`, which {source} requires")
        for text in texts.values():
            for out in re.findall(rf"module\.{name}\.([A-Za-z_][\w-]*)", text):
                if out not in inner["output"]:
                    problems.append(f"{tf}: module.{name}.{out}: {source} has no such output")
    # Templates: every placeholder is given by the templatefile() call (checked by name).
    for text in texts.values():
        for tpl, args in re.findall(r'templatefile\("\$\{path\.module\}/([^"]+)",\s*(local\.\w+|\{)', text):
            src = (folder / tpl).read_text()
            holes = set(re.findall(r"\$\{\s*([A-Za-z_]\w*)", src)) - {"path"}
            if args == "{":
                start = text.find(f'templatefile("${{path.module}}/{tpl}"')
                block = text[start : text.find("})", start)]
                keys = set(re.findall(r"^\s*([A-Za-z_]\w*)\s*=", block, re.M))
            else:
                lname = args.split(".")[1]
                start = text.find(f"{lname} = {{")
                block = text[start : text.find("\n  }", start)]
                keys = set(re.findall(r"^\s*([A-Za-z_]\w*)\s*=", block, re.M))
            for h in sorted(holes - keys):
                if not re.search(rf"%\{{\s*for\s+(\w+\s*,\s*)?{h}\b", src) and not re.search(rf"for\s+\w+\s*,\s*{h}\s+in", src) and not re.search(rf"for\s+{h}\s*,", src):
                    problems.append(f"{folder / tpl}: ${{{h}}} is not given by templatefile() in {folder.name}")

for p in problems:
    print(p)
files = len(list(ROOT.rglob("*.tf")))
print(f"terraform/: {files} files in {len(module_dirs())} modules; {len(problems)} problems")
sys.exit(1 if problems else 0)
