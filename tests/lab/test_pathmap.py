"""The device shells' path mapping: device paths in, host paths to bash; host paths out, device paths back."""

from __future__ import annotations

import pytest

from sftlab.fleet.layout import DEVICE_PREFIXES
from sftlab.shell.pathmap import Heredoc, HeredocTracker, PathMap, StreamUnmapper, find_heredocs, overlap_len

ROOT = "/srv/lab/ftd1"
PREFIXES = DEVICE_PREFIXES


@pytest.fixture
def pm() -> PathMap:
    return PathMap(ROOT, PREFIXES)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("cd /var/sf/peers/x && ls", f"cd {ROOT}/var/sf/peers/x && ls"),
        ("cat > /var/tmp/a <<'EOF'", f"cat > {ROOT}/var/tmp/a <<'EOF'"),
        ("FOO=/etc/sf/x", f"FOO={ROOT}/etc/sf/x"),
        ("ls /etc/sfx", "ls /etc/sfx"),
        ("ls /etc/sf", f"ls {ROOT}/etc/sf"),
        ("/etc/sf", f"{ROOT}/etc/sf"),
        ("cd /home/admin", f"cd {ROOT}/home/admin"),
        ("cd /Volume/home/admin", f"cd {ROOT}/Volume/home/admin"),
        ("ls /Volume/home/admin/x /home/admin/y", f"ls {ROOT}/Volume/home/admin/x {ROOT}/home/admin/y"),
        ("echo a/etc/sf", "echo a/etc/sf"),
        ("echo x/var/sf/y", "echo x/var/sf/y"),
        ("x=$(cat /etc/sf/a)", f"x=$(cat {ROOT}/etc/sf/a)"),
        ("x=$(/usr/local/sf/bin/pmtool status)", f"x=$({ROOT}/usr/local/sf/bin/pmtool status)"),
        ("x=`cat /etc/sf/a`", f"x=`cat {ROOT}/etc/sf/a`"),
        ("ls 2>/var/log/x", f"ls 2>{ROOT}/var/log/x"),
        ("ls >>/var/log/x 2>&1", f"ls >>{ROOT}/var/log/x 2>&1"),
        ("wc </var/log/messages", f"wc <{ROOT}/var/log/messages"),
        ("cat '/etc/sf/a b' \"/var/sf/c\"", f"cat '{ROOT}/etc/sf/a b' \"{ROOT}/var/sf/c\""),
        ("PATH=/usr/bin:/usr/local/sf/bin", f"PATH=/usr/bin:{ROOT}/usr/local/sf/bin"),
        ("a;/etc/sf/x|/var/sf/y&/ngfw", f"a;{ROOT}/etc/sf/x|{ROOT}/var/sf/y&{ROOT}/ngfw"),
        ("(cd /ngfw)", f"(cd {ROOT}/ngfw)"),
        ("cp {/etc/sf/a,/var/sf/b} /var/tmp", f"cp {{{ROOT}/etc/sf/a,{ROOT}/var/sf/b}} {ROOT}/var/tmp"),
        ("ls /etc/sf*", f"ls {ROOT}/etc/sf*"),
        ("openssl x509 -in /etc/sf/ca_root/cacert.pem", f"openssl x509 -in {ROOT}/etc/sf/ca_root/cacert.pem"),
        ("echo /root /rootfs", f"echo {ROOT}/root /rootfs"),
        ("cd ~ && cat ~/x", "cd ~ && cat ~/x"),
        ("ls /tmp /usr/bin /etc/passwd", "ls /tmp /usr/bin /etc/passwd"),
        ("echo /etc/sf:/var/sf", f"echo {ROOT}/etc/sf:{ROOT}/var/sf"),
        ("", ""),
    ],
)
def test_to_host(pm: PathMap, line: str, expected: str) -> None:
    assert pm.to_host(line) == expected


def test_longest_prefix_wins_whatever_the_order() -> None:
    pm = PathMap(ROOT, ["/ngfw", "/ngfw/var/sf"])
    assert pm.to_host("ls /ngfw/var/sf/x") == f"ls {ROOT}/ngfw/var/sf/x"
    assert pm.prefixes == ("/ngfw/var/sf", "/ngfw")


def test_root_trailing_slash_is_ignored() -> None:
    assert PathMap(ROOT + "/", PREFIXES).to_host("ls /etc/sf") == f"ls {ROOT}/etc/sf"


@pytest.mark.parametrize("root", ["relative/root", "/", ""])
def test_root_must_be_absolute(root: str) -> None:
    with pytest.raises(ValueError, match="root"):
        PathMap(root, PREFIXES)


@pytest.mark.parametrize("prefix", ["etc/sf", "/etc/sf/", "/"])
def test_prefixes_must_be_absolute_without_trailing_slash(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefixes"):
        PathMap(ROOT, [prefix])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{ROOT}/etc/sf/x", "/etc/sf/x"),
        (f"{ROOT}", "/"),
        (f"cd {ROOT}\n", "cd /\n"),
        (f"{ROOT}: Is a directory", "/: Is a directory"),
        (f"'{ROOT}/var/sf' and {ROOT}/ngfw", "'/var/sf' and /ngfw"),
        (f"{ROOT}0/etc", f"{ROOT}0/etc"),
        (f"{ROOT}.bak", f"{ROOT}.bak"),
        (f"{ROOT}-old/x", f"{ROOT}-old/x"),
        ("/srv/lab/ftd/etc", "/srv/lab/ftd/etc"),
        ("nothing here", "nothing here"),
    ],
)
def test_to_device(pm: PathMap, text: str, expected: str) -> None:
    assert pm.to_device(text) == expected


@pytest.mark.parametrize(
    ("text", "pattern", "expected"),
    [
        ("abc/sr", "/srv", 3),
        ("abc/srv", "/srv", 4),
        ("abc", "/srv", 0),
        ("/s/s", "/s/sx", 4),
        ("x/", "/srv", 1),
        ("", "/srv", 0),
        ("abc", "", 0),
    ],
)
def test_overlap_len(text: str, pattern: str, expected: int) -> None:
    assert overlap_len(text, pattern) == expected


def _stream(pm: PathMap, chunks: list[str]) -> str:
    unmapper = StreamUnmapper(pm)
    return "".join(unmapper.feed(c) for c in chunks) + unmapper.flush()


def test_stream_unmapper_every_split_point(pm: PathMap) -> None:
    text = f"a {ROOT}/etc/sf/x\n{ROOT}\n{ROOT}0 {ROOT}:{ROOT}/{ROOT}"
    expected = pm.to_device(text)
    assert expected == f"a /etc/sf/x\n/\n{ROOT}0 /://"
    for i in range(len(text) + 1):
        assert _stream(pm, [text[:i], text[i:]]) == expected, i
    for i in range(0, len(text), 7):
        assert _stream(pm, [text[:i], text[i : i + 7], text[i + 7 :]]) == expected, i


def test_stream_unmapper_one_char_at_a_time(pm: PathMap) -> None:
    text = f"sha256  {ROOT}/etc/sf/x\n{ROOT}1\n"
    assert _stream(pm, list(text)) == f"sha256  /etc/sf/x\n{ROOT}1\n"


def test_stream_unmapper_emits_safe_text_at_once(pm: PathMap) -> None:
    unmapper = StreamUnmapper(pm)
    assert unmapper.feed("hello /srv/la") == "hello "
    assert unmapper.feed("b/ftd1") == ""
    assert unmapper.feed("/x\n") == "/x\n"
    assert unmapper.feed("done /s") == "done "
    assert unmapper.flush() == "/s"
    assert unmapper.flush() == ""


def test_stream_root_at_end_decides_on_next_char(pm: PathMap) -> None:
    unmapper = StreamUnmapper(pm)
    assert unmapper.feed(ROOT) == ""
    assert unmapper.feed("/etc") == "/etc"
    assert unmapper.feed(ROOT) == ""
    assert unmapper.feed(" ") == "/ "


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("cat > /var/tmp/a <<'EOF'", [Heredoc("EOF", strip_tabs=False)]),
        ("cat <<EOF", [Heredoc("EOF", strip_tabs=False)]),
        ('cat <<"END"', [Heredoc("END", strip_tabs=False)]),
        ("cat <<-EOF", [Heredoc("EOF", strip_tabs=True)]),
        ("cat <<- 'X Y'", [Heredoc("X Y", strip_tabs=True)]),
        ("cat<<EOF>/tmp/x", [Heredoc("EOF", strip_tabs=False)]),
        ("cat <<\\EOF", [Heredoc("EOF", strip_tabs=False)]),
        ("cat <<E'O'F", [Heredoc("EOF", strip_tabs=False)]),
        ("paste <<A /dev/stdin 3<<-'B'", [Heredoc("A", strip_tabs=False), Heredoc("B", strip_tabs=True)]),
        ("cat <<A; cat <<B", [Heredoc("A", strip_tabs=False), Heredoc("B", strip_tabs=False)]),
        ("cat <<< '/etc/sf'", []),
        ("echo '<<EOF'", []),
        ('echo "a <<EOF"', []),
        ('echo "a \\" <<EOF"', []),
        ("echo \\<<EOF", []),
        ("echo $((1<<2))", []),
        ("((x = 1 << 3)) && echo $x", []),
        ("echo hi # cat <<EOF", []),
        ("echo a#b <<EOF", [Heredoc("EOF", strip_tabs=False)]),
        ("ls /etc/sf", []),
        ("cat <<", []),
    ],
)
def test_find_heredocs(line: str, expected: list[Heredoc]) -> None:
    assert find_heredocs(line) == expected


def _map_all(pm: PathMap, lines: list[str]) -> list[str]:
    tracker = HeredocTracker()
    return [tracker.map_line(pm, line) for line in lines]


def test_heredoc_body_is_raw_and_the_next_command_is_mapped(pm: PathMap) -> None:
    lines = ["cat > /var/tmp/x.pem <<'EOF'", "/etc/sf/keep", "-----END-----", "EOF", "ls /etc/sf"]
    assert _map_all(pm, lines) == [
        f"cat > {ROOT}/var/tmp/x.pem <<'EOF'",
        "/etc/sf/keep",
        "-----END-----",
        "EOF",
        f"ls {ROOT}/etc/sf",
    ]


def test_terminator_must_match_the_whole_line(pm: PathMap) -> None:
    lines = ["cat <<EOF", " EOF", "EOF ", "EOFX", "EOF", "cat /etc/sf/a"]
    assert _map_all(pm, lines) == [*lines[:5], f"cat {ROOT}/etc/sf/a"]


def test_dash_heredoc_accepts_tab_indented_terminator(pm: PathMap) -> None:
    lines = ["cat <<-EOF", "\t/etc/sf/a", "\t\tEOF", "cat /etc/sf/b"]
    assert _map_all(pm, lines) == [*lines[:3], f"cat {ROOT}/etc/sf/b"]


def test_plain_heredoc_does_not_accept_tab_indented_terminator(pm: PathMap) -> None:
    tracker = HeredocTracker()
    assert not tracker.feed("cat <<EOF")
    assert tracker.feed("\tEOF")
    assert tracker.in_body
    assert tracker.feed("EOF")
    assert not tracker.in_body


def test_several_heredocs_on_one_line_are_consumed_in_order(pm: PathMap) -> None:
    lines = ["cat <<A; cat <<-B", "/etc/sf/1", "B", "A", "/etc/sf/2", "\tB", "ls /etc/sf"]
    assert _map_all(pm, lines) == ["cat <<A; cat <<-B", *lines[1:6], f"ls {ROOT}/etc/sf"]


def test_here_string_opens_no_body(pm: PathMap) -> None:
    assert _map_all(pm, ["base64 -d <<< abc", "ls /etc/sf"]) == ["base64 -d <<< abc", f"ls {ROOT}/etc/sf"]


def test_reset_drops_pending_heredocs(pm: PathMap) -> None:
    tracker = HeredocTracker()
    tracker.feed("cat <<EOF")
    assert tracker.in_body
    tracker.reset()
    assert tracker.map_line(pm, "ls /etc/sf") == f"ls {ROOT}/etc/sf"
