#!/bin/sh
# A dynamic page for calm's Apache profile: a CGI program forked by a prefork worker per request.
# ?lines=N (default 200) sets the response size (about 60 bytes a line).
lines=$(printf '%s' "${QUERY_STRING:-}" | sed -n 's/^.*lines=\([0-9][0-9]*\).*$/\1/p')
lines=${lines:-200}
[ "$lines" -gt 100000 ] && lines=100000
printf 'Content-Type: text/plain\r\n\r\n'
printf 'calm dynamic page, pid %s, %s\n' "$$" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
i=0
while [ "$i" -lt "$lines" ]; do
    printf 'line %06d of %06d: the quick brown fox jumps over the dog\n' "$i" "$lines"
    i=$((i + 1))
done
