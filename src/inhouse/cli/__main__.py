from inhouse.cli.main import app

app()
