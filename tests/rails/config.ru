# A tiny Rails Action Cable server for tests/client/test_client.py's interop test:
# ActionCable.server alone (no Rails app), the async adapter, two channels.
#   puma --bind tcp://127.0.0.1:PORT tests/rails/config.ru
require "logger"
require "action_cable"

class ApplicationConnection < ActionCable::Connection::Base
  identified_by :current_user

  def connect
    user = request.params["user"]
    reject_unauthorized_connection if user == "intruder"
    self.current_user = user || "anonymous"
  end
end

# ChatChannel(room): streams from "chat:<room>"; action speak broadcasts
# {"message", "room", "user"}; transmits a welcome on subscribe.
class ChatChannel < ActionCable::Channel::Base
  def subscribed
    return reject if params[:room] == "secret"

    stream_from "chat:#{params[:room]}"
    transmit({ "welcome" => params[:room], "user" => current_user })
  end

  def speak(data)
    ActionCable.server.broadcast(
      "chat:#{params[:room]}",
      { "message" => data["message"], "room" => params[:room], "user" => current_user }
    )
  end
end

# EchoChannel: the default action transmits the data back.
class EchoChannel < ActionCable::Channel::Base
  def receive(data)
    transmit({ "echo" => data })
  end
end

ActionCable.server.config.cable = { "adapter" => "async" }
ActionCable.server.config.connection_class = -> { ApplicationConnection }
ActionCable.server.config.logger = Logger.new($stdout)

map "/cable" do
  run ActionCable.server
end

map "/up" do
  run ->(_env) { [200, { "Content-Type" => "text/plain" }, ["ok"]] }
end
