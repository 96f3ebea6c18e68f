"""Cloud Functions entry points. Deploy each with `--entry-point <name>`.

`github_webhook` is the only public function. `dashboard` is HTTP too, read-only and invoked only
by the IAM members Terraform grants. Every other function is a CloudEvent function invoked by its
Pub/Sub push subscription. Clients are built on first use.
"""

import functions_framework

from shared.bootstrap import services


@functions_framework.http
def github_webhook(request):
    return services().webhook()(request)


@functions_framework.http
def dashboard(request):
    return services().dashboard()(request)


@functions_framework.cloud_event
def orchestrator(cloud_event):
    services().consumer("orchestrator")(cloud_event)


@functions_framework.cloud_event
def repo_scout(cloud_event):
    services().consumer("repo_scout")(cloud_event)


@functions_framework.cloud_event
def code_agent(cloud_event):
    services().consumer("code_agent")(cloud_event)


@functions_framework.cloud_event
def test_agent(cloud_event):
    services().consumer("test_agent")(cloud_event)


@functions_framework.cloud_event
def qa_agent(cloud_event):
    services().consumer("qa_agent")(cloud_event)


@functions_framework.cloud_event
def deploy_agent(cloud_event):
    services().consumer("deploy_agent")(cloud_event)


@functions_framework.cloud_event
def monitor_agent(cloud_event):
    services().consumer("monitor_agent")(cloud_event)
