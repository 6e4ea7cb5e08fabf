"""placeholder"""
from flask import Blueprint

bp = Blueprint("subscriptions", __name__)
