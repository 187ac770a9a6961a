"""What ``annostream serve`` prints before it starts: where it listens, what it serves, how
to connect. Plain text (the caller prints it without markup); secrets are never shown."""

from __future__ import annotations

from annostream.store import Store

MAX_PROJECTS_LISTED = 20


def base_url(bind: str, port: int) -> str:
    """The URL a client on this machine uses (a wildcard bind is reached on loopback)."""
    shown = "127.0.0.1" if bind in ("0.0.0.0", "::", "") else bind
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def banner(store: Store, where: str, bind: str, port: int) -> str:
    """The lines ``serve`` prints: URL, store, projects, API docs, a connect snippet."""
    from annostream.service.projects import LOCAL, list_projects

    url = base_url(bind, port)
    found = list_projects(store, LOCAL)
    lines = [
        f"annostream serving {where} at {url}",
        f"  store:    {store.engine.url.render_as_string(hide_password=True)}",
        f"  API docs: {url}/docs (index of routes: {url}/)",
    ]
    if not found:
        lines.append(f"  projects: none yet; create one: annostream project create NAME --data {where}")
    else:
        lines.append(f"  projects: {len(found)}")
        for p in found[:MAX_PROJECTS_LISTED]:
            lines.append(
                f"    {p['string_id']}: {p['datasets']} datasets, {p['files']} files, "
                f"{'public' if p['is_public'] else 'private'}"
            )
        if len(found) > MAX_PROJECTS_LISTED:
            more = len(found) - MAX_PROJECTS_LISTED
            lines.append(f"    ... and {more} more (annostream ls --data {where})")
    example = found[0]["string_id"] if found else "NAME"
    lines += [
        "  connect:  from annostream import Project",
        f'            Project("{example}", CLIENT_ID, CLIENT_SECRET, host="{url}")',
        f"            (a key: annostream keys create --project {example} --data {where})",
    ]
    return "\n".join(lines)
