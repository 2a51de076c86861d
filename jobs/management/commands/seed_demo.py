from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the demo theme (bundled sample feeds), a Reviewers group and an admin user."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default=os.environ.get("TRENDREEL_ADMIN_USER", "admin"))
        parser.add_argument("--password", default=os.environ.get("TRENDREEL_ADMIN_PASSWORD", ""))

    def handle(self, *args, username: str, password: str, **options) -> None:
        from stages.demo import ensure_demo_theme

        theme = ensure_demo_theme()
        reviewers, _ = Group.objects.get_or_create(name="Reviewers")
        reviewers.permissions.add(Permission.objects.get(codename="review_job", content_type__app_label="jobs"))
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            password = password or secrets.token_urlsafe(12)
            User.objects.create_superuser(username=username, email="", password=password)
            self.stdout.write(f"admin user: {username}  password: {password}")
        elif password:
            user.set_password(password)
            user.save(update_fields=["password"])
            self.stdout.write(f"admin user: {username}  password: {password}")
        else:
            self.stdout.write(f"admin user: {username} (exists; password unchanged)")
        self.stdout.write(f"theme: {theme.slug} ({theme.name})")
