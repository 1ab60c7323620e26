"""Experimental APIs, under the names of the reference SDK's ``inngest.experimental``."""
