from formreader.cli import app

app(prog_name="formreader")
