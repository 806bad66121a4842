"""`cert-rollout rollouts [CERTIFICATE_ARN|DOMAIN]`: a certificate's rollout executions, newest
first: start time, trigger (Health, ACM, manual), serial, outcome, targets verified/failed, and
the execution ARN to pass to `history` (the facts of render.execution_facts, which `history`
heads its output with).

Found by reading the state machine's executions (ListExecutions, newest first: Step Functions
API Reference, ListExecutions "Results are sorted by time, with the most recent execution
first") and each one's input and output (DescribeExecution); the history (GetExecutionHistory)
only of an execution without output (it did not succeed), for its serial and target outcomes.
Bounded: at most --limit rows, at most --max-scanned executions read. A DOMAIN is resolved
through ACM (ListCertificates with every key type, then DescribeCertificate's names).
"""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from cert_rollout.commands.common import (
    AsJson,
    EndpointUrl,
    Region,
    StackOutputs,
    StateMachineArn,
    aws_client,
    aws_error,
    emit_json,
    fail,
    out_console,
    resolve,
)
from cert_rollout.render import execution_facts, targets_text
from cert_rollout.sfn import fetch_history

# ListCertificates returns only RSA_1024 and RSA_2048 certificates unless Includes.keyTypes
# names others (ACM API Reference, Filters: keyTypes, its valid values).
ACM_KEY_TYPES = ["RSA_1024", "RSA_2048", "RSA_3072", "RSA_4096", "EC_prime256v1", "EC_secp384r1", "EC_secp521r1"]


def certificates_for_domain(acm: Any, domain: str) -> list[str]:
    """The ARNs of the ACM certificates (every key type) whose domain name or a subject
    alternative name is ``domain`` (compared case-insensitively, a wildcard as written).
    ListCertificates' summary lists at most 100 SANs (HasAdditionalSubjectAlternativeNames when
    cut), so a certificate whose summary does not name it is asked with DescribeCertificate only
    when the list was cut or is absent (the local cloud's moto gives none). Raises
    botocore's ClientError / BotoCoreError."""
    wanted = domain.lower().rstrip(".")
    found: list[str] = []
    kwargs: dict[str, Any] = {"Includes": {"keyTypes": ACM_KEY_TYPES}}
    while True:
        page = acm.list_certificates(**kwargs)
        for summary in page.get("CertificateSummaryList", []):
            names = [summary.get("DomainName") or "", *summary.get("SubjectAlternativeNameSummaries", [])]
            if wanted in (n.lower() for n in names):
                found.append(summary["CertificateArn"])
            elif summary.get("HasAdditionalSubjectAlternativeNames") or "SubjectAlternativeNameSummaries" not in summary:
                cert = acm.describe_certificate(CertificateArn=summary["CertificateArn"])["Certificate"]
                if wanted in (n.lower() for n in cert.get("SubjectAlternativeNames", [])):
                    found.append(summary["CertificateArn"])
        if not page.get("NextToken"):
            return found
        kwargs["NextToken"] = page["NextToken"]


def list_rollouts(sfn: Any, state_machine_arn: str, certificates: set[str] | None, limit: int,
                  max_scanned: int) -> tuple[list[dict[str, Any]], int]:
    """(the facts of each execution of ``state_machine_arn`` about one of ``certificates``
    (every execution when None), newest first, at most ``limit``; how many executions were
    read, at most ``max_scanned``). Raises botocore's ClientError / BotoCoreError."""
    rows: list[dict[str, Any]] = []
    scanned = 0
    kwargs: dict[str, Any] = {"stateMachineArn": state_machine_arn, "maxResults": min(100, max_scanned)}
    while len(rows) < limit and scanned < max_scanned:
        page = sfn.list_executions(**kwargs)
        for listed in page["executions"]:
            if len(rows) >= limit or scanned >= max_scanned:
                break
            scanned += 1
            desc = sfn.describe_execution(executionArn=listed["executionArn"])
            facts = execution_facts(desc)
            if certificates is not None and facts["certificateArn"] not in certificates:
                continue
            if desc.get("output") is None:  # did not succeed: its serial and outcomes are in the history
                facts = execution_facts(desc, fetch_history(sfn, listed["executionArn"]))
            rows.append(facts)
        if not page.get("nextToken"):
            break
        kwargs["nextToken"] = page["nextToken"]
    rows.sort(key=lambda f: f.get("startDate") or "", reverse=True)
    return rows, scanned


def rollouts(
    certificate: str | None = typer.Argument(None, metavar="CERTIFICATE_ARN|DOMAIN",
                                             help="A certificate's ARN, or a domain name on it (resolved "
                                                  "through ACM). Default: every certificate."),
    state_machine_arn: StateMachineArn = None,
    stack_outputs: StackOutputs = None,
    limit: int = typer.Option(20, "--limit", min=1, max=1000, help="Show at most this many executions."),
    max_scanned: int = typer.Option(200, "--max-scanned", min=1, max=10000,
                                    help="Read at most this many of the state machine's executions (newest first)."),
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    as_json: AsJson = False,
) -> None:
    """A certificate's rollout executions, newest first: start time, trigger (Health, ACM,
    manual), serial, outcome, targets verified/failed and the execution ARN to pass to
    `cert-rollout history`. Exit 2 when a DOMAIN names no ACM certificate."""
    from botocore.exceptions import BotoCoreError, ClientError

    sm_arn = resolve(state_machine_arn, stack_outputs, "RolloutStateMachineArn", "--state-machine-arn", as_json)
    sfn = aws_client("stepfunctions", region, endpoint_url)
    certificates: set[str] | None = None
    try:
        if certificate and certificate.startswith("arn:"):
            certificates = {certificate}
        elif certificate:
            certificates = set(certificates_for_domain(aws_client("acm", region, endpoint_url), certificate))
            if not certificates:
                fail(f"no ACM certificate in this region and account names the domain {certificate!r}", 2, as_json)
        rows, scanned = list_rollouts(sfn, sm_arn, certificates, limit, max_scanned)
    except (ClientError, BotoCoreError) as e:
        fail(aws_error(e), 2, as_json)
    if as_json:
        emit_json({"certificates": sorted(certificates) if certificates is not None else None,
                   "rollouts": rows, "scanned": scanned})
        return
    _print_rollouts(rows, certificates, scanned)


def _print_rollouts(rows: list[dict[str, Any]], certificates: set[str] | None, scanned: int) -> None:
    """A table row per execution (no serial or ARN in a cell: each is printed whole on its own
    line below the table, keyed by the row's number; the certificate only when the rows are of
    more than one)."""
    out = out_console()
    if not rows:
        what = "these certificates" if certificates else "the state machine"
        out.print(f"No rollout execution of {what} among the {scanned} newest executions.", highlight=False)
        return
    t = Table(title_justify="left")
    for col in ("#", "Started", "Trigger", "Status", "Outcome", "Targets"):
        t.add_column(col, overflow="fold")
    for i, r in enumerate(rows, 1):
        t.add_row(str(i), (r["startDate"] or "-")[:19].replace("T", " "), escape(r["trigger"]), r["status"] or "-",
                  escape(r["outcome"] or "-"), targets_text(r))
    out.print(t)
    several = len({r["certificateArn"] for r in rows}) > 1
    for i, r in enumerate(rows, 1):
        out.print(escape(f"#{i} serial {r['serial'] or '-'}"), soft_wrap=True, highlight=False)
        if several:
            out.print(escape(f"   certificate {r['certificateArn'] or '-'}"), soft_wrap=True, highlight=False)
        out.print(escape(f"   cert-rollout history {r['executionArn']}"), soft_wrap=True, highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``rollouts`` to the cert-rollout app."""
    app.command("rollouts")(rollouts)
