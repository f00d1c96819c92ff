"""Two changes to FerretDB v1.24.2 for the test stack, each making it cheaper and closer to the
production MongoDB it stands in for; what FerretDB answers is unchanged.

1. Resource tracking off (internal/util/resource: Track and Untrack return at once). It is a
   leak detector: for every iterator and document iterator it creates — one per document read
   — it adds a stack trace to a pprof profile and sets a finalizer that panics if the object is
   collected untracked. A CPU profile of FerretDB serving a read of 10,000 bot documents (its
   debug handler, 8 s) put 15 % of its CPU in that tracking (`resource.Track` →
   `pprof.(*Profile).Add` → `runtime.callers`), with the finalizers adding GC work.

2. A lookup by a top-level field uses an index, as on MongoDB. FerretDB pushes `{f: v}` down to
   PostgreSQL as `_jsonb->$1 @> $2` (the key a parameter, containment so that an array holding
   v matches too), which no index serves: every find or upsert by `id` or `_id` read the whole
   table (pg_stat_user_tables after a 10,000-bot cold start: 10,560 sequential scans of the bot
   collection, 105,580,000 rows read, 0 index scans; PostgreSQL 4.7 ms of CPU per pod created).
   Here the key of a top-level field is written into the SQL as a literal (quoted as FerretDB
   quotes index fields), and every index FerretDB creates on one top-level field (the `_id`
   index of each collection, `id` on the bots) gets a GIN `jsonb_path_ops` index on the same
   expression beside its btree: `(_jsonb->'f') @> v` is then an index lookup, for a scalar and
   for an array holding v alike, and FerretDB still filters every row it reads as before.

Usage: python3 ferretdb-test-stack.py <FerretDB module dir>. Fails if the code to patch is not
found exactly as expected (the pinned FerretDB version changed).
"""

import sys
from pathlib import Path

MARK = "the0-k8s test stack"
TRACKING = "internal/util/resource/resource.go"
OFF = f"\tif true {{\n\t\treturn // {MARK}: tracking off\n\t}}\n"

QUERY = "internal/backends/postgresql/query.go"
# The key placeholder and its argument, in each of filterEqual's four value cases.
KEY_PLACEHOLDER = ("p.Next(), p.Next())", "keySQL(p, k, operator), p.Next())", 4)
KEY_ARGUMENT = ("args = append(args, k, ",
                "args = append(append(args, keyArgs(k, operator)...), ", 4)
HELPERS = f'''
// keySQL is the SQL of the key k: a literal for a top-level field ({MARK}), so that an
// index on the expression `_jsonb->'f'` serves the filter; else a placeholder, as before.
func keySQL(p *metadata.Placeholder, k any, operator string) string {{
	if s, ok := k.(string); ok && operator == "->" {{
		// standard_conforming_strings=on is checked when FerretDB connects
		return "'" + strings.ReplaceAll(s, "'", "''") + "'"
	}}

	return p.Next()
}}

// keyArgs is the argument for the key's placeholder: none for a literal (see keySQL).
func keyArgs(k any, operator string) []any {{
	if _, ok := k.(string); ok && operator == "->" {{
		return nil
	}}

	return []any{{k}}
}}
'''

REGISTRY = "internal/backends/postgresql/metadata/registry.go"
CREATED = "\t\tcreated = append(created, index.Name)\n"
GIN_CREATE = f'''\t\t// {MARK}: a GIN index beside the btree of a single top-level field, which
\t\t// serves the pushed-down containment `(_jsonb->'f') @> v` (see query.go keySQL).
\t\tif len(index.Key) == 1 && !strings.Contains(index.Key[0].Field, ".") {{
\t\t\tgin := fmt.Sprintf(
\t\t\t\t"CREATE INDEX %s ON %s USING gin ((%s->%s) jsonb_path_ops)",
\t\t\t\tpgx.Identifier{{ginIndexName(index.PgIndex)}}.Sanitize(),
\t\t\t\tpgx.Identifier{{dbName, c.TableName}}.Sanitize(),
\t\t\t\tDefaultColumn, quoteString(index.Key[0].Field),
\t\t\t)
\t\t\tif _, err = p.Exec(ctx, gin); err != nil {{
\t\t\t\t_ = r.indexesDrop(ctx, p, dbName, collectionName, created)
\t\t\t\treturn lazyerrors.Error(err)
\t\t\t}}
\t\t}}

'''
DROP = ('\t\tq := fmt.Sprintf("DROP INDEX %s", '
        'pgx.Identifier{dbName, c.Indexes[i].PgIndex}.Sanitize())\n',
        f'''\t\tgin := fmt.Sprintf("DROP INDEX IF EXISTS %s", // {MARK}
\t\t\tpgx.Identifier{{dbName, ginIndexName(c.Indexes[i].PgIndex)}}.Sanitize())
\t\tif _, err := p.Exec(ctx, gin); err != nil {{
\t\t\treturn lazyerrors.Error(err)
\t\t}}

''')
GIN_NAME = f'''
// ginIndexName is the name of the GIN index beside a btree index ({MARK}): same length,
// so within PostgreSQL's limit, and unique as the btree's name is.
func ginIndexName(pgIndex string) string {{
	return strings.TrimSuffix(pgIndex, "_idx") + "_gin"
}}
'''


def edit(path: Path, old: str, new: str, count: int = 1) -> str | None:
    text = path.read_text()
    if text.count(old) != count:
        return f"ferretdb patch: expected {count} of {old!r} in {path}, found {text.count(old)}"
    path.write_text(text.replace(old, new))
    return None


def main(module_dir: str) -> int:
    root = Path(module_dir)
    edits = [
        *((root / TRACKING, head, head + OFF)
          for head in ("func Track(obj any, token *Token) {\n",
                       "func Untrack(obj any, token *Token) {\n")),
        (root / QUERY, *KEY_PLACEHOLDER),
        (root / QUERY, *KEY_ARGUMENT),
        (root / REGISTRY, CREATED, GIN_CREATE + CREATED),
        (root / REGISTRY, DROP[0], DROP[1] + DROP[0]),
    ]
    for path, old, new, *count in edits:
        if (error := edit(path, old, new, *count)) is not None:
            print(error, file=sys.stderr)
            return 1
    with (root / QUERY).open("a") as query:
        query.write(HELPERS)
    with (root / REGISTRY).open("a") as registry:
        registry.write(GIN_NAME)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
