"""browser.py: headless Chromium through Debian's chromium-driver and python3-selenium.

start() answers a WebDriver on a fresh profile with no background network traffic and
the browser log (console messages) and the performance log (network events) enabled.
"""
import os
import shutil
import tempfile

CHROMIUM = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"


def available():
    try:
        import selenium  # noqa: F401
    except ImportError:
        return False
    return os.path.exists(CHROMIUM) and os.path.exists(DRIVER)


class Browser:
    def __init__(self, width=1400, height=1000):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        self.profile = tempfile.mkdtemp(prefix="hpod-chromium-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--user-data-dir=" + self.profile,
                  "--window-size=%d,%d" % (width, height)):
            opts.add_argument(a)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        self.driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
        self.driver.set_page_load_timeout(60)
        self.driver.set_script_timeout(60)

    def console(self):
        """The console messages since the last call: [(level, message)]."""
        return [(e["level"], e["message"]) for e in self.driver.get_log("browser")]

    def close(self):
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)
