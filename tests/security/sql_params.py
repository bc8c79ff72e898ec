#!/usr/bin/env python3
"""sql_params.py — proof that triaged's SQL is parameterised.

Usage: sql_params.py ROOT   (exit 0: clean; 1: violations, each printed as
FILE:LINE: message; 2: usage)

C side (daemon/, plugins/, every .c and .h): every libpq call that takes SQL
text (PQexec, PQexecParams, PQprepare, PQsendQuery, PQsendQueryParams,
PQsendPrepare) must get constant text. An argument is constant when it is:
  - one or more adjacent string literals, or macros defined as such, or a
    conditional (c ? A : B) of constants;
  - an element of a `static const char *const NAME[] = { literals }` array;
  - the `sql` member of a td_store_stmt (every td_store_stmt initializer in
    the tree must give a literal, and no code may assign `.sql`/`->sql`);
  - the `sql` member of a td_migration (the migrations that
    cmake/embed_sql.cmake embeds from sql/*.sql at build time);
  - a parameter of the enclosing function, when every call of that function
    passes a constant at that position (followed recursively).
Anything else (a buffer, a variable built at run time) is a violation. Also
a violation: any sprintf/snprintf/asprintf/strcat/strcpy/strncat whose
literal text looks like SQL (a statement keyword followed by a space), i.e.
SQL text built by formatting.

SQL side (sql/*.sql): every dynamic `EXECUTE expr` in PL/pgSQL (EXECUTE
FUNCTION/PROCEDURE of triggers aside) must be `EXECUTE format('...', ...)`
whose format string has only %I, %L and %% placeholders (no %s), or a plain
literal (values then only through USING), and never a `||` concatenation.
"""
import os
import re
import sys

SQL_FUNCS = {  # function -> index of the SQL text argument
    "PQexec": 1,
    "PQexecParams": 1,
    "PQsendQuery": 1,
    "PQsendQueryParams": 1,
    "PQprepare": 2,
    "PQsendPrepare": 2,
}
FORMAT_FUNCS = {"sprintf", "snprintf", "asprintf", "vsnprintf", "strcat", "strcpy",
                "strncat", "strncpy", "evbuffer_add_printf"}
SQL_WORDS = re.compile(r"\b(SELECT|INSERT INTO|UPDATE|DELETE FROM|CREATE|DROP|ALTER|"
                       r"TRUNCATE|COPY|LISTEN|NOTIFY|EXECUTE|PREPARE)\s")

TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<comment>/\*.*?\*/|//[^\n]*)
  | (?P<pp>^[ \t]*\#(?:[^\n\\]|\\\n|\\.)*)
  | (?P<str>(?:u8|[uUL])?"(?:[^"\\\n]|\\.)*")
  | (?P<chr>'(?:[^'\\\n]|\\.)*')
  | (?P<id>[A-Za-z_]\w*)
  | (?P<num>\.?\d(?:[\w.]|[eEpP][+-])*)
  | (?P<op>->|\+\+|--|<<=|>>=|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^!~<>=?:;,.(){}\[\]])
""", re.S | re.X | re.M)


class Tok:
    __slots__ = ("kind", "text", "line")

    def __init__(self, kind, text, line):
        self.kind, self.text, self.line = kind, text, line

    def __repr__(self):
        return self.text


def lex(src):
    toks, defines, pos, line = [], {}, 0, 1
    while pos < len(src):
        m = TOKEN.match(src, pos)
        if not m:
            raise SyntaxError(f"line {line}: cannot read {src[pos:pos+20]!r}")
        kind, text = m.lastgroup, m.group()
        if kind == "pp":
            d = re.match(r"\s*#\s*define\s+(\w+)\s+((?:\"(?:[^\"\\]|\\.)*\"\s*)+)$",
                         text.replace("\\\n", " "))
            if d:
                defines[d.group(1)] = line
        elif kind not in ("ws", "comment"):
            toks.append(Tok(kind, text, line))
        line += text.count("\n")
        pos = m.end()
    return toks, defines


def split_args(toks, i):
    """toks[i] is '('. Returns (list of arg token lists, index after ')')."""
    depth, args, cur = 0, [], []
    j = i
    while j < len(toks):
        t = toks[j].text
        if t in "([{":
            depth += 1
            if depth > 1:
                cur.append(toks[j])
        elif t in ")]}":
            depth -= 1
            if depth == 0:
                args.append(cur)
                return args, j + 1
            cur.append(toks[j])
        elif t == "," and depth == 1:
            args.append(cur)
            cur = []
        else:
            cur.append(toks[j])
        j += 1
    raise SyntaxError("unbalanced parentheses")


class Unit:
    def __init__(self, path, rel):
        self.path, self.rel = path, rel
        with open(path, encoding="utf-8", errors="replace") as f:
            self.toks, self.defines = lex(f.read())
        self.functions = self._functions()
        self.const_arrays = self._const_arrays()

    def _functions(self):
        """name -> (params, body start, body end) for every function
        definition: IDENT ( params ) { ... } at depth 0."""
        out, depth, t = {}, 0, self.toks
        i = 0
        while i < len(t):
            x = t[i].text
            if x == "{":
                depth += 1
            elif x == "}":
                depth -= 1
            elif depth == 0 and t[i].kind == "id" and i + 1 < len(t) and t[i + 1].text == "(":
                try:
                    args, k = split_args(t, i + 1)
                except SyntaxError:
                    i += 1
                    continue
                if k < len(t) and t[k].text == "{":
                    params = []
                    for a in args:
                        names = [y.text for y in a if y.kind == "id"]
                        params.append(names[-1] if names else None)
                    end, d = k, 0
                    while end < len(t):
                        if t[end].text == "{":
                            d += 1
                        elif t[end].text == "}":
                            d -= 1
                            if d == 0:
                                break
                        end += 1
                    out[t[i].text] = (params, k, end)
                    i = end + 1
                    continue
            i += 1
        return out

    def _const_arrays(self):
        """Names of `static const char *const NAME[] = { literals }`."""
        out, t = set(), self.toks
        for i in range(len(t) - 8):
            seq = [x.text for x in t[i:i + 7]]
            if seq[:6] == ["const", "char", "*", "const", seq[4], "["] and t[i + 4].kind == "id":
                j = i + 5
                while j < len(t) and t[j].text != "]":
                    j += 1
                if j + 2 < len(t) and t[j + 1].text == "=" and t[j + 2].text == "{":
                    k, ok = j + 3, True
                    while t[k].text != "}":
                        if t[k].kind != "str" and t[k].text != ",":
                            ok = False
                        k += 1
                    if ok:
                        out.add(t[i + 4].text)
        return out

    def enclosing(self, idx):
        for name, (params, start, end) in self.functions.items():
            if start <= idx <= end:
                return name, params, start, end
        return None, [], 0, 0


def is_literal(expr, unit):
    """Adjacent string literals / string macros, maybe parenthesised, or a
    conditional whose two results are such."""
    e = [x for x in expr]
    while len(e) >= 2 and e[0].text == "(" and e[-1].text == ")":
        e = e[1:-1]
    if not e:
        return False
    if any(x.text == "?" for x in e):
        q = next(i for i, x in enumerate(e) if x.text == "?")
        depth, c = 0, None
        for i in range(q + 1, len(e)):
            if e[i].text == "?":
                depth += 1
            elif e[i].text == ":":
                if depth == 0:
                    c = i
                    break
                depth -= 1
        return c is not None and is_literal(e[q + 1:c], unit) and is_literal(e[c + 1:], unit)
    return all(x.kind == "str" or (x.kind == "id" and x.text in unit.defines) for x in e)


class Checker:
    def __init__(self, root):
        self.root = root
        self.units = []
        self.errors = []
        for sub in ("daemon", "plugins", "include"):
            for dirpath, _, files in os.walk(os.path.join(root, sub)):
                for f in sorted(files):
                    if f.endswith((".c", ".h")):
                        p = os.path.join(dirpath, f)
                        self.units.append(Unit(p, os.path.relpath(p, root)))
        self.calls_checked = 0
        self.proof = []

    def err(self, unit, line, msg):
        self.errors.append(f"{unit.rel}:{line}: {msg}")

    def callers(self, fname):
        """(unit, index, args) of every call of fname in the tree. A name
        after a type (an identifier, or '*') is a definition or declaration,
        not a call."""
        for u in self.units:
            t = u.toks
            for i in range(1, len(t) - 1):
                if t[i].text != fname or t[i + 1].text != "(":
                    continue
                prev = t[i - 1]
                if (prev.kind == "id" and prev.text != "return") or prev.text == "*":
                    continue
                try:
                    args, _ = split_args(t, i + 1)
                except SyntaxError:
                    continue
                yield u, i, args

    def member_ok(self, unit, idx, expr):
        """X->sql or X.sql where X is a td_store_stmt or td_migration."""
        texts = [x.text for x in expr]
        if len(texts) < 3 or texts[-1] != "sql" or texts[-2] not in ("->", "."):
            return None
        var = texts[0]
        _, _, start, end = unit.enclosing(idx)
        body = unit.toks[start:end + 1] if start else unit.toks
        fn_start = start
        # the declaration of var: in the body or the parameter list
        lo = fn_start - 1
        while lo > 0 and unit.toks[lo].text != "(":
            lo -= 1
        scope = unit.toks[max(0, lo - 2):end + 1]
        for i in range(len(scope) - 2):
            if scope[i].text in ("td_store_stmt", "td_migration"):
                j = i + 1
                while j < len(scope) and scope[j].text in ("*", "const"):
                    j += 1
                if j < len(scope) and scope[j].text == var:
                    return scope[i].text
        return False

    def expr_ok(self, unit, idx, expr, depth=0):
        if is_literal(expr, unit):
            return True, "literal"
        texts = [x.text for x in expr]
        if len(texts) >= 3 and texts[1] == "[" and texts[-1] == "]" and \
                texts[0] in unit.const_arrays:
            return True, f"element of constant array {texts[0]}"
        kind = self.member_ok(unit, idx, expr)
        if kind:
            return True, f"{kind}.sql"
        if len(expr) == 1 and expr[0].kind == "id":
            fname, params, _, _ = unit.enclosing(idx)
            if fname and expr[0].text in params and depth < 4:
                pos = params.index(expr[0].text)
                seen = 0
                for u, i, args in self.callers(fname):
                    seen += 1
                    if pos >= len(args):
                        self.err(u, u.toks[i].line, f"call of {fname} without argument {pos}")
                        return False, "bad call"
                    ok, why = self.expr_ok(u, i, args[pos], depth + 1)
                    if not ok:
                        self.err(u, u.toks[i].line,
                                 f"{fname}() gets non-constant SQL text: "
                                 f"{' '.join(x.text for x in args[pos])}")
                        return False, why
                if seen == 0:
                    return False, f"parameter of {fname}, which nothing calls"
                return True, f"parameter of {fname}, constant at all {seen} calls"
        return False, "not constant"

    def check_c(self):
        for u in self.units:
            t = u.toks
            for i in range(len(t) - 1):
                name = t[i].text
                if t[i + 1].text != "(" or t[i].kind != "id":
                    continue
                if name in SQL_FUNCS:
                    args, _ = split_args(t, i + 1)
                    pos = SQL_FUNCS[name]
                    if pos >= len(args):
                        continue  # a declaration or a macro use
                    self.calls_checked += 1
                    ok, why = self.expr_ok(u, i, args[pos])
                    if ok:
                        self.proof.append(f"ok {u.rel}:{t[i].line}: {name}: {why}")
                    else:
                        self.err(u, t[i].line, f"{name}() SQL text is not constant ({why}): "
                                 f"{' '.join(x.text for x in args[pos])}")
                elif name in FORMAT_FUNCS:
                    args, _ = split_args(t, i + 1)
                    for a in args:
                        for x in a:
                            if x.kind == "str" and SQL_WORDS.search(x.text):
                                self.err(u, t[i].line,
                                         f"{name}() builds SQL-looking text: {x.text[:60]}")
            # td_store_stmt tables: literal SQL in every initializer
            for i in range(len(t) - 1):
                if t[i].text == "td_store_stmt":
                    j = i + 1
                    while j < len(t) and t[j].text not in ("=", ";", ")", "{"):
                        j += 1
                    if j < len(t) and t[j].text == "=" and t[j + 1].text == "{":
                        self.check_stmt_table(u, j + 1)
            for i in range(len(t) - 2):
                if t[i].text in ("->", ".") and t[i + 1].text == "sql" and t[i + 2].text == "=":
                    self.err(u, t[i].line, "assignment to a .sql member at run time")

    def check_stmt_table(self, u, i):
        """u.toks[i] is the '{' of an array of td_store_stmt initializers."""
        t = u.toks
        args, _ = split_args(t, i)
        for entry in args:
            e = entry
            if e and e[0].text == "[":  # designated: [X] = {...}
                k = 0
                while e[k].text != "=":
                    k += 1
                e = e[k + 1:]
            if not e:
                continue
            if e[0].text != "{":
                self.err(u, e[0].line, "td_store_stmt initializer is not a braced list")
                continue
            # re-split the inner braces
            inner = [x for x in e[1:-1]]
            fields, cur, depth = [], [], 0
            for x in inner:
                if x.text in "([{":
                    depth += 1
                elif x.text in ")]}":
                    depth -= 1
                if x.text == "," and depth == 0:
                    fields.append(cur)
                    cur = []
                else:
                    cur.append(x)
            fields.append(cur)
            if len(fields) >= 2 and is_literal(fields[1], u):
                self.proof.append(f"ok {u.rel}:{e[0].line}: td_store_stmt "
                                  f"{' '.join(x.text for x in fields[0])}: literal")
            else:
                self.err(u, e[0].line, "td_store_stmt whose SQL is not a literal: "
                         f"{' '.join(x.text for x in fields[1]) if len(fields) > 1 else '?'}")

    def check_sql(self):
        sqldir = os.path.join(self.root, "sql")
        for f in sorted(os.listdir(sqldir)):
            if not f.endswith(".sql"):
                continue
            rel = os.path.join("sql", f)
            with open(os.path.join(sqldir, f), encoding="utf-8") as fh:
                text = fh.read()
            # blank out -- comments (not inside quotes: good enough for our files)
            clean = re.sub(r"--[^\n]*", lambda m: " " * len(m.group()), text)
            for m in re.finditer(r"\bEXECUTE\b", clean, re.I):
                rest = clean[m.end():]
                if re.match(r"\s+(FUNCTION|PROCEDURE)\b", rest, re.I):
                    continue
                line = clean.count("\n", 0, m.start()) + 1
                stmt = rest[:self._stmt_end(rest)]
                self.calls_checked += 1
                why = self._execute_problem(stmt)
                if not why:
                    self.proof.append(f"ok {rel}:{line}: EXECUTE: "
                                      f"{' '.join(stmt.split())[:60]}")
                else:
                    self.err(_Rel(rel), line, f"dynamic SQL: {why}: EXECUTE "
                             f"{' '.join(stmt.split())[:80]}")

    @staticmethod
    def _stmt_end(s):
        q = False
        for i, c in enumerate(s):
            if c == "'":
                q = not q
            elif c == ";" and not q:
                return i
        return len(s)

    @staticmethod
    def _execute_problem(stmt):
        s = stmt.strip()
        lits = re.findall(r"'(?:[^']|'')*'", s)
        outside = re.sub(r"'(?:[^']|'')*'", "''", s)
        if "||" in outside:
            return "text concatenated with ||"
        m = re.match(r"format\s*\(\s*((?:'(?:[^']|'')*'\s*)+)", s, re.I)
        if m:
            fmt = "".join(re.findall(r"'((?:[^']|'')*)'", m.group(1)))
            for ph in re.findall(r"%(?:\d+\$)?-?\d*(.)", fmt):
                if ph not in ("I", "L", "%"):
                    return f"format() placeholder %{ph} (only %I, %L and USING are safe)"
            return None
        if re.match(r"'(?:[^']|'')*'\s*(USING\b.*)?$", s, re.I | re.S) and lits:
            return None
        return "neither format() with %I/%L nor a literal with USING"

    def run(self):
        self.check_c()
        self.check_sql()
        return self.errors


class _Rel:
    def __init__(self, rel):
        self.rel = rel


def main():
    if len(sys.argv) != 2:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    c = Checker(sys.argv[1])
    errors = c.run()
    for p in c.proof:
        print(p)
    for e in errors:
        print(e)
    print(f"sql_params: {c.calls_checked} SQL call sites and EXECUTEs checked, "
          f"{len(errors)} violation(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
