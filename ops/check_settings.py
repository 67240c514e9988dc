"""`python -m ops.check_settings`: the service's own settings validation, as a command.

ops/deploy.sh runs it in the new image, with the container's environment (`.env` and what
docker-compose.prod.yml adds), before anything is replaced: a bad `.env` stops the deploy with
every problem listed at once, the list `load_settings` would stop the API or a worker with.
`--production` also requires `ENVIRONMENT=production` and a `REDIS_URL`.
"""

from __future__ import annotations

import argparse
import sys

from shared.settings import load_settings_or_report

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.check_settings", description=__doc__.split("\n\n")[0])
    parser.add_argument("--production", action="store_true", help="also require ENVIRONMENT=production and REDIS_URL")
    args = parser.parse_args(argv)
    settings = load_settings_or_report()
    if settings is None:
        return 2
    if args.production:
        problems = []
        if settings.app.environment != "production":
            problems.append(f"ENVIRONMENT is {settings.app.environment!r}, not 'production'")
        if settings.redis.url is None:
            problems.append("REDIS_URL is not set")
        if problems:
            print("settings refused:\n" + "\n".join(f"- {problem}" for problem in problems), file=sys.stderr)
            return 2
    provider = f"Groq ({settings.groq.model})" if settings.use_groq else "offline"
    print(f"settings valid: environment={settings.app.environment}, provider={provider}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
