from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


@staff_member_required(login_url="/accounts/login/")
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "approvals/dashboard.html", {})
