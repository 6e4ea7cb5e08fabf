"""gunicorn's target for deployments that run gunicorn directly: `gunicorn wsgi:app`."""
import os

from scaivault.app import create_app
from scaivault.config import load_settings

app = create_app(load_settings(os.environ))
